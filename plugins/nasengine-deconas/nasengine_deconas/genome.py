"""The DeCoNAS genome (METHODS.md §1.2): one bit string shared by the N dense blocks, as masks.

For mix node ``m = 0..M-1`` and each candidate input ``j = 0..m`` (``j = 0`` is the block input ``u``, ``j > 0``
node ``j - 1``) one 3-bit mask ``4*b_conv + 2*b_sep + b_dil`` (MSB = conv): ``M(M+1)/2`` masks in **controller
order** (m, then j). With the space's feature-fusion search, ``lff`` (M bits: which of ``u, node_0..node_{M-2}``
the local fusion reads; the last node always) and ``gff`` (N bits: which of ``F_0..F_{N-1}`` the global fusion
reads; ``F_N`` always). JSON::

    {"method": "deconas", "N": 4, "M": 4, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
     "masks": [7, 6, 4, 3, 0, 2, 2, 3, 4, 1], "lff": null, "gff": null}

The flat bit string (the released code's ``--child_fixed_arc``, e.g. ``'1 1 1 1 1 0 1 0 0 ...'``) lists the same
bits in the same order: per node, per input, per op (conv, sep, dil). Reading it as ``[K, m+1]`` instead of
``[m+1, K]`` silently gives another network (§1.10 #1).
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import attrs

from nasengine.errors import ValidationError
from nasengine.space import check_fields

__all__ = ["DeconasGenome", "K", "OPS", "n_masks", "mask_offset", "genome_bits", "genome_from_bits",
           "parse_bit_string", "bit_string"]

#: Ops per (node, input) bit, in bit order (MSB first) [P §II-B][C].
OPS = ("conv3x3", "sepconv3x3", "dilconv3x3_r3")
K = len(OPS)
_FIELDS = ("method", "N", "M", "K", "ops", "masks", "lff", "gff")


def n_masks(M: int) -> int:
    """Masks per genome: one per (node, input) pair, ``M(M+1)/2``."""
    return M * (M + 1) // 2


def mask_offset(m: int) -> int:
    """Index of node ``m``'s first mask (its mask for input ``j`` is at ``mask_offset(m) + j``)."""
    return m * (m + 1) // 2


@attrs.frozen
class DeconasGenome:
    """A DeCoNAS architecture: ``N`` blocks, ``M`` mix nodes, the masks in controller order and the optional
    fusion bits (None when the space does not search them). Immutable and hashable."""

    N: int
    M: int
    masks: tuple[int, ...]
    lff: tuple[int, ...] | None = None
    gff: tuple[int, ...] | None = None

    def mask(self, m: int, j: int) -> int:
        """The 3-bit mask of node ``m``'s input ``j``."""
        return self.masks[mask_offset(m) + j]

    def selected(self, m: int, k: int) -> list[int]:
        """The inputs ``j`` (ascending) on which node ``m`` runs op ``k`` (0 conv, 1 sep, 2 dil)."""
        bit = 1 << (K - 1 - k)
        return [j for j in range(m + 1) if self.mask(m, j) & bit]

    @property
    def fusion(self) -> bool:
        return self.lff is not None

    def to_json(self) -> dict:
        return {"method": "deconas", "N": self.N, "M": self.M, "K": K, "ops": list(OPS),
                "masks": list(self.masks), "lff": None if self.lff is None else list(self.lff),
                "gff": None if self.gff is None else list(self.gff)}

    def describe(self) -> str:
        text = f"deconas N={self.N} M={self.M} masks {{{','.join(map(str, self.masks))}}}"
        if self.fusion:
            text += f" lff {''.join(map(str, self.lff))} gff {''.join(map(str, self.gff))}"
        return text

    def check(self, N: int, M: int, fusion: bool) -> None:
        """Raise :class:`ValidationError` naming the field unless this is a genome of the space (N, M, fusion)."""
        for field, value, want in (("N", self.N, N), ("M", self.M, M)):
            if not _is_int(value) or value != want:
                raise ValidationError(f"must be {want} (the space's {field}), got {value!r}", field=field)
        if not isinstance(self.masks, tuple) or len(self.masks) != n_masks(M):
            raise ValidationError(f"must be {n_masks(M)} masks (M(M+1)/2 for M={M}), got {self.masks!r}",
                                  field="masks")
        for i, v in enumerate(self.masks):
            if not _is_int(v) or not 0 <= v < 2 ** K:
                raise ValidationError(f"must be an integer in [0, {2 ** K - 1}] (bits conv, sep, dil), got {v!r}",
                                      field=f"masks[{i}]")
        for field, bits, n in (("lff", self.lff, M), ("gff", self.gff, N)):
            if not fusion:
                if bits is not None:
                    raise ValidationError(f"must be null: the space does not search feature fusion (fusion=false), "
                                          f"got {bits!r}", field=field)
                continue
            if not isinstance(bits, tuple) or len(bits) != n:
                raise ValidationError(f"must be a list of {n} bits (the space searches feature fusion), got "
                                      f"{bits!r}", field=field)
            for i, b in enumerate(bits):
                if not _is_int(b) or b not in (0, 1):
                    raise ValidationError(f"must be 0 or 1, got {b!r}", field=f"{field}[{i}]")

    @classmethod
    def from_json(cls, data: Any, N: int, M: int, fusion: bool) -> "DeconasGenome":
        """Parse and validate :meth:`to_json` output, or a flat bit string (the README's ``--child_fixed_arc``,
        see :func:`parse_bit_string`). Errors are :class:`ValidationError` naming the field."""
        if isinstance(data, str):
            return parse_bit_string(data, N, M, fusion)
        if not isinstance(data, dict):
            raise ValidationError(f"expected a JSON object or a bit string, got {type(data).__name__}", field="genome")
        check_fields(data, _FIELDS)
        if data["method"] != "deconas":
            raise ValidationError(f"must be 'deconas', got {data['method']!r}", field="method")
        if not _is_int(data["K"]) or data["K"] != K:
            raise ValidationError(f"must be {K} (conv3x3, sepconv3x3, dilconv3x3_r3), got {data['K']!r}", field="K")
        if data["ops"] != list(OPS):
            raise ValidationError(f"must be {list(OPS)} (the bit order, MSB first), got {data['ops']!r}", field="ops")

        def seq(field):
            value = data[field]
            if value is None:
                return None
            if not isinstance(value, list):
                raise ValidationError(f"must be a list, got {type(value).__name__} {value!r}", field=field)
            return tuple(value)

        masks = seq("masks")
        if masks is None:
            raise ValidationError("must be a list of masks, got null", field="masks")
        genome = cls(data["N"], data["M"], masks, seq("lff"), seq("gff"))
        genome.check(N, M, fusion)
        return genome


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def genome_bits(genome: DeconasGenome) -> tuple[int, ...]:
    """The genome as bits in controller order: per node, per input, per op (conv, sep, dil: MSB first), then
    (fusion search) the M lff bits and the N gff bits (COMMON design §9: the vector encoding)."""
    bits = [(v >> (K - 1 - k)) & 1 for v in genome.masks for k in range(K)]
    if genome.lff is not None:
        bits += list(genome.lff) + list(genome.gff)
    return tuple(bits)


def genome_from_bits(bits: Sequence[int], N: int, M: int, fusion: bool) -> DeconasGenome:
    """Inverse of :func:`genome_bits` (``bits`` must have the right length and be 0/1: ValidationError)."""
    n = K * n_masks(M)
    want = n + (M + N if fusion else 0)
    bits = list(bits)
    if len(bits) != want:
        raise ValidationError(f"must be {want} bits (K*M(M+1)/2{' + M + N' if fusion else ''} for N={N}, M={M}), "
                              f"got {len(bits)}", field="bits")
    for i, b in enumerate(bits):
        if not _is_int(b) or b not in (0, 1):
            raise ValidationError(f"must be 0 or 1, got {b!r}", field=f"bits[{i}]")
    masks = tuple(sum(int(bits[i + k]) << (K - 1 - k) for k in range(K)) for i in range(0, n, K))
    if not fusion:
        return DeconasGenome(N, M, masks)
    lff = tuple(int(b) for b in bits[n:n + M])
    gff = tuple(int(b) for b in bits[n + M:])
    return DeconasGenome(N, M, masks, lff, gff)


def parse_bit_string(text: str, N: int, M: int, fusion: bool = False) -> DeconasGenome:
    """A genome from the README's flat bit string (``'1 1 1 1 1 0 1 0 0 ...'``: the released code's
    ``--child_fixed_arc``; spaces optional), in controller order (§1.2)."""
    chars = text.replace(",", " ").split()
    if len(chars) == 1 and len(chars[0]) > 1:
        chars = list(chars[0])  # '111110100...'
    bad = [c for c in chars if c not in ("0", "1")]
    if bad:
        raise ValidationError(f"a bit string holds only 0 and 1 (space-separated), got {bad[0]!r} in {text!r}",
                              field="bits")
    return genome_from_bits([int(c) for c in chars], N, M, fusion)


def bit_string(genome: DeconasGenome) -> str:
    """The genome as the README's flat bit string (space-separated)."""
    return " ".join(map(str, genome_bits(genome)))
