"""The SearchSpace role: what a controller searches over.

A search space owns a compact **genome** type (any immutable, hashable value — an ``attrs`` frozen class is
the usual choice) and knows how to sample, validate, vary and serialise it, and how to **decode** it into
the engine's architecture graph (:class:`nasengine.graph.ArchGraph`), from which every cost, module and key
is derived. Generic controllers use only the methods below, so any controller runs on any space.

Write one by subclassing :class:`SearchSpace` and registering it in a plugin::

    @nasengine.hookimpl
    def nasengine_register_search_spaces(registry):
        registry.add("mine", MySpace)

and check it with the contract tests of :mod:`nasengine.testing`.
"""
from __future__ import annotations

import abc
import hashlib
import json
from typing import Any, ClassVar, Hashable, Mapping, Sequence

import numpy as np

__all__ = ["SearchSpace", "Genome", "canonical_json", "check_fields"]

Genome = Hashable
"""A genome is any immutable, hashable value owned by its space."""


def canonical_json(data: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) used for keys and storage."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def check_fields(data: Mapping, fields: Sequence[str], where: str = "") -> None:
    """For genome parsers: ``data`` must have exactly ``fields``; otherwise a :class:`ValidationError` naming
    the first unknown or missing field (``where.field``, e.g. ``layers[2].kernel``)."""
    from nasengine.errors import ValidationError

    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise ValidationError(f"unknown field (known: {', '.join(fields)})", field=f"{prefix}{key}")
    for key in fields:
        if key not in data:
            raise ValidationError("missing", field=f"{prefix}{key}")


class SearchSpace(abc.ABC):
    """A space of SR architectures with its own genome encoding.

    Subclasses take their options as keyword arguments (from a method preset's ``space`` section) and
    must set ``scale``, the upscaling factor of every architecture they decode.

    Contract (checked by :class:`nasengine.testing.SearchSpaceContract`):

    * ``sample`` / ``mutate`` / ``crossover`` return valid genomes (``validate`` passes);
    * ``from_json(to_json(g)) == g`` and the JSON survives ``json.dumps``;
    * ``decode(g)`` is a valid graph whose output is ``scale`` times its input;
    * ``vector_decode(vector_encode(g)) == g`` and ``vector_encode(g)`` lies within ``vector_bounds()``;
    * ``size()`` is the number of distinct genomes (an ``int``, possibly huge).
    """

    #: Schema tag written with every stored genome (bump when the JSON layout changes).
    genome_schema: ClassVar[str] = "1"
    scale: int = 2
    #: How a weight-sharing supernet (:mod:`nasengine.supernet`) slices a slot whose input is a concat of a
    #: varying subset of inputs: the name of a registered weight layout. ``"per_slot"`` (the engine's): one
    #: kernel per input slot, so a conv over several selected inputs is the sum of per-input convs + one bias.
    weight_layout: ClassVar[str] = "per_slot"
    #: Options the registry-wide contract tests (``tests/test_registered.py``, run over every installed plugin)
    #: make this space with: small ones when the defaults are too large for a quick test (a space's own tests
    #: check its defaults). Empty: the defaults.
    contract_options: ClassVar[dict] = {}

    # ---- sampling and variation ---------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Genome:
        """A random genome drawn with ``rng`` (the only source of randomness)."""

    @abc.abstractmethod
    def mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        """A valid variation of ``genome``."""

    @abc.abstractmethod
    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        """Two valid children of ``a`` and ``b``."""

    # ---- validity and decoding ---------------------------------------------------------------
    @abc.abstractmethod
    def validate(self, genome: Genome) -> None:
        """Raise :class:`nasengine.errors.ValidationError` naming the field if ``genome`` is not valid here."""

    @abc.abstractmethod
    def decode(self, genome: Genome):
        """The :class:`nasengine.graph.ArchGraph` of ``genome``."""

    # ---- serialisation -------------------------------------------------------------------------
    @abc.abstractmethod
    def to_json(self, genome: Genome) -> dict:
        """A JSON-able dict; must round-trip through :meth:`from_json`."""

    @abc.abstractmethod
    def from_json(self, data: Any) -> Genome:
        """Parse and validate; malformed input raises ValidationError naming the field, nothing else."""

    # ---- generic (vector) encoding --------------------------------------------------------------
    @abc.abstractmethod
    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds ``(lower, upper)`` of the categorical vector encoding."""

    @abc.abstractmethod
    def vector_encode(self, genome: Genome) -> np.ndarray:
        """The genome as an integer vector within :meth:`vector_bounds`."""

    @abc.abstractmethod
    def vector_decode(self, vector: np.ndarray) -> Genome:
        """Inverse of :meth:`vector_encode`; any in-bounds vector gives a valid genome (repairing if needed)."""

    @abc.abstractmethod
    def size(self) -> int:
        """The number of distinct genomes of this space."""

    # ---- optional: weight sharing and extra metrics ---------------------------------------------------
    def densest(self) -> Genome:
        """A genome whose graph holds every parameterised node (slot) of the space, each at its widest input
        width, with every node that holds parameters named (``ArchGraph.add(..., name=...)``) the same way in
        every genome: a one-shot supernet allocates its shared weights from ``decode(densest())``.
        Spaces that do not support weight sharing leave this unimplemented."""
        raise NotImplementedError(f"search space {self.name} has no densest() genome, so it cannot be used as a "
                                  "weight-sharing supernet")

    def supernet_graph(self):
        """The graph a weight-sharing supernet allocates its bank from: every slot of the space, each at its
        widest input. Default: ``decode(densest())``. A space in which no single genome holds every slot (e.g.
        a choice of cell type per position, or one of several ops per edge) returns a union graph instead:
        one valid graph holding each slot once (branches that do not reach the output end in ``unused``)."""
        return self.decode(self.densest())

    def differentiable_supernet(self) -> Any:
        """The torch supernet a differentiable search (``Method(loop="differentiable")``) trains: weights and
        architecture parameters together (the protocol is :mod:`nasengine.search.differentiable`'s). Spaces
        without one leave this unimplemented."""
        raise NotImplementedError(f"search space {self.name} has no differentiable_supernet(), so it cannot be "
                                  "searched by the differentiable loop")

    def genome_metrics(self, genome: Genome) -> dict[str, float]:
        """Extra per-genome numbers a reward may need that are not costs (e.g. a complexity penalty). Search
        loops merge them into a candidate's costs. Default: none."""
        return {}

    # ---- provided --------------------------------------------------------------------------------
    def genome_key(self, genome: Genome) -> str:
        """A stable key of the genome itself (sha256 of its canonical JSON)."""
        return hashlib.sha256(canonical_json(self.to_json(genome)).encode()).hexdigest()

    def key(self, genome: Genome) -> str:
        """The architecture's key: the canonical key of the decoded graph, so that two genomes that encode
        the same network are evaluated once."""
        return self.decode(genome).key()

    def describe(self, genome: Genome) -> str:
        """A one-line human-readable summary (defaults to the compact JSON)."""
        return canonical_json(self.to_json(genome))

    @property
    def name(self) -> str:
        return type(self).__name__
