"""FALSR's hybrid controller (§4): NSGA-II whose variation mixes random mutation, roulette-wheel selection
(RWS) on FLOPs / params and a reinforcement-driven mutation by a small policy network (Fig. 2, Eq. 6).

Registered as ``falsr-hybrid``. It is the engine's :class:`~nasengine.controllers.NSGA2` (pymoo's
non-dominated sorting, crowding distance, binary tournaments k = 2, Deb's constraint domination — the
reward's constraints, e.g. minimum PSNR / maximum Mult-Adds, arrive as ``Result.violation``, and infeasible
candidates lose every comparison with feasible ones) with FALSR's own operators:

* **Initialisation (§4.2).** Each initial model repeats one cell of ``S`` ``n`` times; the cells of the
  population are drawn *without replacement*, so no two initial models share their cell. When ``N`` exceeds
  ``|S|``, the first ``|S|`` models use every cell once and the remaining ``N - |S|`` are sampled
  arbitrarily (each cell block drawn independently, "without repeating cells"). Connections follow Eq. (3):
  ``p ~ U(0,1)``; random (each bit a fair coin) for ``p < p_r``, dense (all bits 1) for
  ``p_r <= p < p_r + p_den``, none (all bits 0: a plain chain) otherwise.
* **Crossover (§4.4, Eq. 4).** The space's ``crossover``: one cell position ``i`` and one connection row
  ``c_j^{j:n}`` are exchanged between the parents at once (:meth:`FalsrSpace.crossover`).
* **Mutation (§4.5).** A categorical choice: exploitation (the reinforcement-driven mutation) with
  probability ``p_rl``, else exploration by Eq. (5): ``p ~ U(0,1)``; random mutation (the space's
  ``mutate``: one gene) for ``p < p_mr``, RWS on FLOPs for ``p_mr <= p < p_mr + p_mf``, RWS on params
  otherwise. RWS keeps ``M_mac`` and draws each of the ``n`` cells from ``S`` with weights that fall with the
  cell's log-scaled cost (:meth:`rws_weights`); each cell choice's Mult-Adds and params come from the engine's
  analytic cost model once (the cell as block 1 of a chain, reading the 32-channel head; cached per space).
* **Reinforcement-driven mutation (Fig. 2).** :class:`FalsrPolicy`: ``θ^mic`` = one categorical head of
  ``|S|`` logits per cell block; ``θ^mac`` = a cell-embedding table (``|S| x embedding_dim``), the ``n``
  embeddings of ``M_mic`` concatenated and fed to 3 fully connected layers whose last has ``n(n+1)/2``
  sigmoid outputs ``O^mac`` (connection probabilities, in the genome's flat row order — the paper's
  ``O^mac_{(i-1)(n+1-i/2)+j}`` indexing). A mutation resamples each cell from its head and then each
  connection bit from ``O^mac`` given the new cells, each gene with probability ``rl_gene_prob`` (1: the
  policy generates the whole model).
* **Policy gradient (Eq. 6).** After each ``tell``, one optimiser step on
  ``-mean_b[ (R_b - baseline) * ( sum_i log p(cell_i = S_i) + sum_j c_j log O_j + (1 - c_j) log(1 - O_j) ) ]``.
  The generation of a model is one episode whose only reward arrives at its end, so with ``gamma = 1`` the
  discounted accumulated rewards ``R_i`` and ``R_j`` of every action equal the model's reward ``R_b``:
  the engine's ``fitness_of``: ``Result.reward`` (the reward's ``scalar`` — a method overrides it for its
  paper's reward), else the reward's scalarisation of the metrics. Results without a finite reward (failed,
  or rejected before training) are not learned from. The exponential-moving-average baseline is a variance
  reduction the paper does not mention (``rl_baseline=False`` gives Eq. 6 literally). The step itself (Adam,
  baseline, the seeded generator and their state) is the engine's
  :class:`~nasengine.controllers.policy.PolicyGradient`; the network is FALSR's own.

**Generic spaces.** The paper's initialisation, RWS and policy are defined on ``(M_mic, M_mac)`` only. On a
space without the FALSR genome interface (:func:`falsr_interface_problem` says what is missing: ``n_cells``,
``cell_choices``, ``cell_index`` and genomes that are :class:`~nasengine_falsr.genome.FalsrGenome`) the
controller logs one warning and runs as plain NSGA-II with the space's own ``sample`` / ``crossover`` /
``mutate`` (every mutation is the random one; ``p_rl`` / ``p_mr`` / ``p_mf`` / ``rl_*`` are recorded but
unused); ``generic_fallback=False`` makes it refuse such a space with a :class:`ConfigError` instead. A
space gets the full controller by exposing those three members and FALSR genomes.

All randomness comes from ``self.rng`` (numpy) and a torch ``Generator`` seeded from it; ``state_dict()``
holds everything (population, told offspring waiting for survival, pending genomes and their origin, the
queue of the initial population, the numpy RNG state and the policy gradient's state: weights, Adam state,
baseline, torch generator), so a restored controller asks exactly what the original would have.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasengine.controller import Result
from nasengine.controllers import fitness_of
from nasengine.controllers.nsga2 import NSGA2
from nasengine.controllers.policy import PolicyGradient, seeded_generator
from nasengine.cost import DEFAULT_LR_SIZE, cost_breakdown
from nasengine.errors import ConfigError, ValidationError
from nasengine.options import OptionError, choice, flag, option, positive, probability, real, sequence, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace
from nasengine_falsr.genome import FalsrGenome, macro_length

__all__ = ["FalsrHybridController", "FalsrPolicy", "MUTATION_KINDS", "ORIGINS", "cell_costs", "falsr_interface_problem"]

log = logging.getLogger("nasengine.falsr")

#: The mutation kinds of §4.5: random, RWS on FLOPs (Mult-Adds), RWS on params, reinforcement-driven.
MUTATION_KINDS = ("random", "rws_flops", "rws_params", "rl")
#: How an asked genome was made: the initial population, a tournament winner copied or crossed without
#: mutation, or one of the mutation kinds (``origin_counts`` counts them).
ORIGINS = ("init", "copy", "crossover") + MUTATION_KINDS

_TRAIN_ON = ("all", "rl")


# ---------------------------------------------------------------------------------------------------------
# the FALSR genome interface
# ---------------------------------------------------------------------------------------------------------
def falsr_interface_problem(space: SearchSpace) -> str | None:
    """``None`` when ``space`` offers what the FALSR operators need, else what is missing (one sentence).

    Needed: ``n_cells`` (int >= 1), ``cell_choices`` (the operator set ``S``: a non-empty sequence of
    :class:`~nasengine_falsr.genome.Cell`), ``cell_index(cell)`` (its position in ``cell_choices``), and
    genomes that are :class:`~nasengine_falsr.genome.FalsrGenome` (checked by validating one).
    """
    missing = [name for name in ("n_cells", "cell_choices", "cell_index") if not hasattr(space, name)]
    if missing:
        return (f"the space {type(space).__name__} has no {', '.join(missing)} (the FALSR genome interface: "
                "n_cells, cell_choices, cell_index, FalsrGenome genomes)")
    n, cells = space.n_cells, space.cell_choices
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 or not cells:
        return f"the space {type(space).__name__} has n_cells={n!r} and {len(cells) if cells else 0} cell choices"
    probe = FalsrGenome((cells[0],) * int(n), (0,) * macro_length(int(n)))
    try:
        space.validate(probe)
    except Exception as exc:  # noqa: BLE001 - any refusal means the genomes are not FALSR genomes
        return f"the space {type(space).__name__} does not accept FalsrGenome genomes ({exc})"
    return None


def cell_costs(space: SearchSpace, lr_size: Sequence[int] = DEFAULT_LR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(mult_adds, params)`` of every cell choice of ``space`` (arrays in ``cell_choices`` order), by the
    engine's analytic cost model at LR ``lr_size``: each cell as block 1 of a chain, so reading the head's 32
    channels — the per-operator approximation of §4.5 ("based on S (involving 192 basic operators)"). The
    nodes of block 1 are those named ``cell0/...``. Computed on each call: the controller keeps its own."""
    cells = tuple(space.cell_choices)
    n = int(space.n_cells)
    mult_adds = np.zeros(len(cells))
    params = np.zeros(len(cells))
    for k, cell in enumerate(cells):
        graph = space.decode(FalsrGenome((cell,) * n, (0,) * macro_length(n)))
        nodes = [c for c in cost_breakdown(graph, lr_size) if (graph.name(c.node) or "").startswith("cell0/")]
        if not nodes:
            raise ValidationError("the decoded graph has no nodes named 'cell0/...'; the RWS mutation needs "
                                  "them to cost a cell on its own", field=f"cell_choices[{k}]")
        mult_adds[k] = sum(c.mult_adds for c in nodes)
        params[k] = sum(c.params for c in nodes)
    return mult_adds, params


# ---------------------------------------------------------------------------------------------------------
# the policy network (Fig. 2)
# ---------------------------------------------------------------------------------------------------------
class FalsrPolicy(nn.Module):
    """The controller network of Fig. 2.

    * ``cell_logits`` (``θ^mic``): ``n x n_choices`` — cell block ``i``'s categorical head,
      ``p(cell_i = S_k) = softmax(cell_logits[i])[k]``; zeros at the start (uniform over ``S``).
    * ``θ^mac``: ``embedding`` (``n_choices x embedding_dim``, one vector per cell choice, shared by the
      blocks), then ``fc1: n*embedding_dim -> hidden[0]``, ReLU, ``fc2: hidden[0] -> hidden[1]``, ReLU,
      ``fc3: hidden[1] -> n(n+1)/2`` (logits of ``O^mac``, one sigmoid per connection bit).

    Initialisation uses only ``generator``: embeddings N(0, 1), fully connected weights Xavier-uniform,
    biases 0.
    """

    def __init__(self, n_cells: int, n_choices: int, embedding_dim: int, hidden: Sequence[int],
                 generator: torch.Generator):
        super().__init__()
        self.n_cells = int(n_cells)
        self.n_choices = int(n_choices)
        self.n_bits = macro_length(self.n_cells)
        self.cell_logits = nn.Parameter(torch.zeros(self.n_cells, self.n_choices))
        self.embedding = nn.Parameter(torch.empty(self.n_choices, embedding_dim))
        self.fc1 = nn.Linear(self.n_cells * embedding_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], self.n_bits)
        with torch.no_grad():
            nn.init.normal_(self.embedding, 0.0, 1.0, generator=generator)
            for fc in (self.fc1, self.fc2, self.fc3):
                nn.init.xavier_uniform_(fc.weight, generator=generator)
                nn.init.zeros_(fc.bias)

    def connection_logits(self, micro: torch.Tensor) -> torch.Tensor:
        """``[B, n(n+1)/2]`` logits of ``O^mac`` for ``micro`` (``[B, n]`` cell indices)."""
        h = self.embedding[micro].reshape(micro.shape[0], -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(h)))))

    def forward(self, micro: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cell_probs [n, n_choices], O^mac [B, n(n+1)/2])``: the per-cell categorical heads and the
        connection probabilities (sigmoids) given the cells ``micro`` (``[B, n]`` indices)."""
        return F.softmax(self.cell_logits, dim=-1), torch.sigmoid(self.connection_logits(micro))

    def log_prob(self, micro: torch.Tensor, macro: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(M_mic | θ^mic), log p(M_mac | M_mic, θ^mac))``, each ``[B]``: the two sums of Eq. (6)
        without the rewards (``macro``: ``[B, n(n+1)/2]`` bits as floats)."""
        log_cells = F.log_softmax(self.cell_logits, dim=-1)  # [n, S]
        lp_mic = log_cells.gather(1, micro.t()).t().sum(dim=1)  # sum_i log p(cell_i = S_i)
        # c log O + (1 - c) log(1 - O), computed from the logits for stability
        lp_mac = -F.binary_cross_entropy_with_logits(self.connection_logits(micro), macro,
                                                     reduction="none").sum(dim=1)
        return lp_mic, lp_mac


# ---------------------------------------------------------------------------------------------------------
# the controller
# ---------------------------------------------------------------------------------------------------------
class FalsrHybridController(NSGA2):
    """FALSR's hybrid controller (see the module docstring for the method and its sources).

    Options (``controller`` section; a bad value raises :class:`ConfigError` naming it):

    =====================  ========  ==============================================================
    option                 default   meaning (source)
    =====================  ========  ==============================================================
    ``population_size``    64        N (§6.1: "the population for each iteration is 64")
    ``crossover_prob``     0.9       a mating crosses its parents (paper silent; engine NSGA-II's)
    ``mutation_prob``      0.5       a child is mutated (paper silent; engine NSGA-II's)
    ``max_tries``          50        matings per offspring spent avoiding repeats (engine NSGA-II's)
    ``p_r``, ``p_den``     1/3, 1/3  Eq. (3) random / dense initial connections, rest none (paper silent)
    ``p_rl``               0.5       mutation is the RL one (exploitation) (paper silent: "balance")
    ``p_mr``, ``p_mf``     1/3, 1/3  Eq. (5) random / RWS-FLOPs, rest RWS-params (paper silent)
    ``rws_floor``          0.1       RWS weight floor, in units of the log-cost range (paper silent)
    ``rl_embedding_dim``   16        cell embedding width (paper silent)
    ``rl_hidden``          [64, 64]  widths of fc1, fc2; fc3 has n(n+1)/2 outputs (Fig. 2 / paper silent)
    ``rl_lr``              0.05      Adam learning rate of the policy (paper silent)
    ``rl_baseline``        true      subtract an EMA baseline from R (paper silent; false = Eq. 6 as printed)
    ``rl_baseline_decay``  0.9       EMA decay of the baseline (paper silent)
    ``rl_gene_prob``       1.0       per-gene resampling probability of the RL mutation (paper silent)
    ``rl_train_on``        "all"     learn from every told model, or only RL-mutated ones "rl" (paper silent)
    ``generic_fallback``   true      on a non-FALSR space run as NSGA-II (true) or refuse (false)
    =====================  ========  ==============================================================
    """

    registry_name = "falsr-hybrid"
    mutation_tag = "random"  # the space's own mutate is §4.5's random mutation

    @attrs.frozen(kw_only=True)
    class Options(NSGA2.Options):
        population_size: int = option(64, whole(1), help="N (§6.1: 'the population for each iteration is 64')")
        p_r: float = option(1 / 3, probability, help="Eq. (3): random initial connections (paper silent)")
        p_den: float = option(1 / 3, probability,
                              help="Eq. (3): dense initial connections; the rest none (paper silent)")
        p_rl: float = option(0.5, probability, help="a mutation is the RL one (paper silent: 'balance')")
        p_mr: float = option(1 / 3, probability, help="Eq. (5): random mutation (paper silent)")
        p_mf: float = option(1 / 3, probability,
                             help="Eq. (5): RWS on FLOPs; the rest RWS on params (paper silent)")
        rws_floor: float = option(0.1, real(0.0), help="RWS weight floor, in units of the log-cost range")
        rl_embedding_dim: int = option(16, whole(1), help="cell embedding width (paper silent)")
        rl_hidden: tuple = option((64, 64), sequence(whole(1), length=2),
                                  help="widths [h1, h2] of fc1, fc2; fc3 has n(n+1)/2 outputs (Fig. 2)")
        rl_lr: float = option(0.05, positive, help="Adam learning rate of the policy (paper silent)")
        rl_baseline: bool = option(True, flag,
                                   help="subtract an EMA baseline from R (false: Eq. 6 as printed)")
        rl_baseline_decay: float = option(0.9, real(0.0, 1.0, hi_open=True), help="EMA decay of the baseline")
        rl_gene_prob: float = option(1.0, probability, help="per-gene resampling probability of the RL mutation")
        rl_train_on: str = option("all", choice(*_TRAIN_ON),
                                  help="learn from every told model (all) or only RL-mutated ones (rl)")
        generic_fallback: bool = option(True, flag,
                                        help="on a non-FALSR space run as plain NSGA-II (true) or refuse (false)")

        def __attrs_post_init__(self):
            if self.p_r + self.p_den > 1.0 + 1e-12:
                raise OptionError("p_den", f"p_r + p_den must be <= 1 (Eq. 3: the rest is 'no connections'), "
                                  f"got {self.p_r:g} + {self.p_den:g}")
            if self.p_mr + self.p_mf > 1.0 + 1e-12:
                raise OptionError("p_mf", f"p_mr + p_mf must be <= 1 (Eq. 5: the rest is RWS on params), "
                                  f"got {self.p_mr:g} + {self.p_mf:g}")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)

        problem = falsr_interface_problem(space)
        self.falsr = problem is None
        if problem is not None:
            if not self.generic_fallback:
                raise ConfigError(f"controller {self.registry_name!r} needs a FALSR space: {problem}; set "
                                  "controller.generic_fallback=true to run it as plain NSGA-II there")
            log.warning("%s: %s; falling back to plain NSGA-II with the space's own sample / crossover / mutate "
                        "(no paper initialisation, no roulette-wheel or reinforcement-driven mutation)",
                        self.registry_name, problem)

        # the torch generator: seeded from self.rng, so the seed is the only input
        self.torch_generator = seeded_generator(int(self.rng.integers(2**63 - 1)))
        self.policy: FalsrPolicy | None = None
        self.learner: PolicyGradient | None = None  # Eq. (6) steps: Adam, EMA baseline, the generator's state
        if self.falsr:
            self.n_cells = int(space.n_cells)
            self.n_choices = len(space.cell_choices)
            self.n_bits = macro_length(self.n_cells)
            self.policy = FalsrPolicy(self.n_cells, self.n_choices, self.rl_embedding_dim, self.rl_hidden,
                                      self.torch_generator)
            self.learner = PolicyGradient(self.policy, lr=self.rl_lr, baseline=self.rl_baseline,
                                          baseline_decay=self.rl_baseline_decay, generator=self.torch_generator)
        self.init_queue: list[Genome] = []          # the rest of the planned initial population
        self.origins: dict[str, str] = {}           # genome key -> how it was made, for asked-not-told genomes
        self.origin_counts = {origin: 0 for origin in ORIGINS}
        self._weights: dict[str, np.ndarray] = {}   # RWS weights (derived from the cost model, not state)
        self._cell_costs: tuple[np.ndarray, np.ndarray] | None = None  # cell_costs(space), computed when needed

    @property
    def baseline(self) -> float | None:
        """The EMA baseline of the rewards (``None`` before the first step, without one, or off FALSR)."""
        return None if self.learner is None else self.learner.baseline

    @property
    def rl_steps(self) -> int:
        """Policy-gradient steps taken."""
        return 0 if self.learner is None else self.learner.steps

    @property
    def rl_samples(self) -> int:
        """Models learned from."""
        return 0 if self.learner is None else self.learner.samples

    def options(self) -> dict[str, Any]:
        return {**super().options(), "p_r": self.p_r, "p_den": self.p_den, "p_rl": self.p_rl, "p_mr": self.p_mr,
                "p_mf": self.p_mf, "rws_floor": self.rws_floor, "rl_embedding_dim": self.rl_embedding_dim,
                "rl_hidden": list(self.rl_hidden), "rl_lr": self.rl_lr, "rl_baseline": self.rl_baseline,
                "rl_baseline_decay": self.rl_baseline_decay, "rl_gene_prob": self.rl_gene_prob,
                "rl_train_on": self.rl_train_on, "generic_fallback": self.generic_fallback}

    # ---- genome <-> (cell indices, bits) --------------------------------------------------------------------
    def _split(self, genome: FalsrGenome) -> tuple[list[int], list[int]]:
        return [self.space.cell_index(c) for c in genome.micro], list(genome.macro)

    def _join(self, micro: Sequence[int], macro: Sequence[int]) -> FalsrGenome:
        cells = self.space.cell_choices
        return FalsrGenome(tuple(cells[int(i)] for i in micro), tuple(int(b) for b in macro))

    def _require_falsr(self, what: str) -> None:
        if not self.falsr:
            raise ConfigError(f"controller {self.registry_name!r}: {what} needs a FALSR space "
                              f"({falsr_interface_problem(self.space)})")

    # ---- initialisation (§4.2) ---------------------------------------------------------------------------
    def connections(self) -> tuple[str, tuple[int, ...]]:
        """One initial ``M_mac`` by Eq. (3): ``(mode, bits)`` with mode random / dense / none."""
        self._require_falsr("the paper's initialisation")
        p = self.rng.random()
        if p < self.p_r:
            return "random", tuple(int(b) for b in self.rng.integers(0, 2, size=self.n_bits))
        if p < self.p_r + self.p_den:
            return "dense", (1,) * self.n_bits
        return "none", (0,) * self.n_bits

    def initial_population(self, size: int | None = None) -> list[FalsrGenome]:
        """``size`` (default N) initial models by §4.2: distinct repeated cells while they last, then
        arbitrary cells; connections by Eq. (3)."""
        self._require_falsr("the paper's initialisation")
        size = self.population_size if size is None else whole(0).value("initial_population(size)", size)
        order = self.rng.permutation(self.n_choices)
        out = []
        for k in range(size):
            if k < self.n_choices:
                micro = [int(order[k])] * self.n_cells
            else:
                micro = [int(i) for i in self.rng.integers(self.n_choices, size=self.n_cells)]
            out.append(self._join(micro, self.connections()[1]))
        return out

    def sample_new(self) -> tuple[Genome, str]:
        """The next model of the planned initial population (a fresh plan when it is used up)."""
        if not self.falsr:
            return super().sample_new()
        for _ in range(self.max_tries):
            if not self.init_queue:
                self.init_queue = self.initial_population()
            genome = self.init_queue.pop(0)
            key = self.space.genome_key(genome)
            if key not in self.seen or self.space_exhausted():
                break
        return genome, key

    # ---- variation (NSGA-II's hooks: vary -> crossover, mutate) ----------------------------------------------
    def crossover(self, a: Genome, b: Genome) -> tuple[Genome, Genome]:
        """§4.4 Eq. (4): the space's crossover (on a FALSR space: cell ``i`` and connection row ``j`` swapped
        at once)."""
        return self.space.crossover(a, b, self.rng)

    def mutation_kind(self) -> str:
        """Draw a mutation kind: ``rl`` with probability ``p_rl``, else Eq. (5) over random / rws_flops /
        rws_params. On a generic space always ``random``."""
        if not self.falsr:
            return "random"
        if self.rng.random() < self.p_rl:
            return "rl"
        p = self.rng.random()
        if p < self.p_mr:
            return "random"
        return "rws_flops" if p < self.p_mr + self.p_mf else "rws_params"

    def mutate(self, genome: Genome, kind: str | None = None) -> tuple[Genome, str]:
        """``(child, kind)``: ``genome`` mutated by ``kind`` (one of :data:`MUTATION_KINDS`, drawn by
        :meth:`mutation_kind` when ``None``)."""
        kind = self.mutation_kind() if kind is None else choice(*MUTATION_KINDS).value("mutate(kind)", kind)
        if kind == "random":
            return self.space.mutate(genome, self.rng), kind
        if kind == "rl":
            return self.mutate_rl(genome), kind
        return self.mutate_rws(genome, "mult_adds" if kind == "rws_flops" else "params"), kind

    def rws_weights(self, metric: str) -> np.ndarray:
        """Roulette-wheel probabilities over ``S`` for ``metric`` (``mult_adds`` = FLOPs, or ``params``): with
        ``L_k = log(cost_k)``, weight ``L_max - L_k + rws_floor * (L_max - L_min)``, normalised — the cheapest
        cell has the largest slice, the dearest ``rws_floor`` of the log range."""
        self._require_falsr("roulette-wheel selection")
        if metric not in self._weights:
            if self._cell_costs is None:  # the controller's own cache: the space's cells do not change
                self._cell_costs = cell_costs(self.space)
            cost = dict(zip(("mult_adds", "params"), self._cell_costs))[metric]
            logc = np.log(np.maximum(cost, 1.0))
            span = float(logc.max() - logc.min())
            w = (logc.max() - logc) + self.rws_floor * span
            if not np.any(w > 0):  # every cell costs the same (or a zero floor with one cell): uniform
                w = np.ones_like(logc)
            self._weights[metric] = w / w.sum()
        return self._weights[metric]

    def mutate_rws(self, genome: FalsrGenome, metric: str) -> FalsrGenome:
        """§4.5 RWS: ``M_mac`` kept, each of the ``n`` cells drawn from ``S`` by :meth:`rws_weights`."""
        p = self.rws_weights(metric)
        micro = self.rng.choice(self.n_choices, size=self.n_cells, p=p)
        return self._join(micro, genome.macro)

    def mutate_rl(self, genome: FalsrGenome) -> FalsrGenome:
        """The reinforcement-driven mutation: each cell resampled from its policy head with probability
        ``rl_gene_prob``, then each connection bit from ``O^mac`` given the new cells with the same
        probability (``rl_gene_prob = 1``: the policy generates the whole model)."""
        self._require_falsr("the reinforcement-driven mutation")
        micro, macro = self._split(genome)
        keep_cells = self.rng.random(self.n_cells) >= self.rl_gene_prob
        keep_bits = self.rng.random(self.n_bits) >= self.rl_gene_prob
        g = self.torch_generator
        with torch.no_grad():
            cell_probs = F.softmax(self.policy.cell_logits, dim=-1)
            drawn = torch.multinomial(cell_probs, 1, generator=g).reshape(-1).tolist()
            micro = [old if keep else new for old, new, keep in zip(micro, drawn, keep_cells)]
            o_mac = torch.sigmoid(self.policy.connection_logits(torch.tensor([micro], dtype=torch.long)))[0]
            bits = torch.bernoulli(o_mac, generator=g).to(torch.long).tolist()
            macro = [old if keep else new for old, new, keep in zip(macro, bits, keep_bits)]
        return self._join(micro, macro)

    # ---- ask / tell ----------------------------------------------------------------------------------------
    def ask(self, n: int | None = None) -> list[Genome]:
        genomes = super().ask(n)
        for genome in genomes:
            key = self.space.genome_key(genome)
            origin = self.origins_made[key]
            self.origins[key] = origin
            self.origin_counts[origin] = self.origin_counts.get(origin, 0) + 1
        return genomes

    def tell(self, results: Sequence[Result]) -> None:
        samples = []
        for result in results:
            key = self.space.genome_key(result.genome)
            origin = self.origins.pop(key, None)
            if not self.falsr or (self.rl_train_on == "rl" and origin != "rl"):
                continue  # not learned from: no reward needed
            value = fitness_of(result, self.reward) if result.status != "failed" else -math.inf
            if math.isfinite(value):
                samples.append((result.genome, value))
        super().tell(results)
        if self.falsr and samples:
            self.policy_update(samples)

    # ---- the policy gradient (Eq. 6) -----------------------------------------------------------------------
    def _batch(self, genomes: Sequence[FalsrGenome]) -> tuple[torch.Tensor, torch.Tensor]:
        split = [self._split(g) for g in genomes]
        micro = torch.tensor([m for m, _ in split], dtype=torch.long)
        macro = torch.tensor([c for _, c in split], dtype=torch.float32)
        return micro, macro

    def policy_log_prob(self, genome: FalsrGenome) -> float:
        """``log p(genome)`` under the policy: ``sum_i log p(cell_i) + sum_j log p(c_j | M_mic)``."""
        self._require_falsr("the policy")
        with torch.no_grad():
            lp_mic, lp_mac = self.policy.log_prob(*self._batch([genome]))
        return float(lp_mic[0] + lp_mac[0])

    def policy_update(self, samples: Sequence[tuple[FalsrGenome, float]]) -> float:
        """One Adam step on Eq. (6) for ``samples`` = ``[(genome, R), ...]``; returns the loss. With
        ``rl_baseline`` the advantage is ``R - b`` (``b``: EMA of the batch-mean rewards, the first batch's
        mean at the start), then ``b`` is updated; without it ``R`` itself, as Eq. (6) is printed."""
        self._require_falsr("the policy")
        if not samples:
            return 0.0
        lp_mic, lp_mac = self.policy.log_prob(*self._batch([g for g, _ in samples]))
        # g(θ) = -∇[Σ_i log p(cell_i) R_i + Σ_j (c_j log O_j + (1 - c_j) log(1 - O_j)) R_j], R_i = R_j = R - b
        return self.learner.step(lp_mic + lp_mac, [float(r) for _, r in samples])

    # ---- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            falsr=self.falsr,
            init_queue=[self.space.to_json(g) for g in self.init_queue],
            origins=dict(self.origins),
            origin_counts=dict(self.origin_counts),
        )
        if self.falsr:
            state["policy_gradient"] = self.learner.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if bool(state.get("falsr", self.falsr)) != self.falsr:
            raise ConfigError(f"controller {self.registry_name!r}: the saved state was made on a "
                              f"{'FALSR' if state.get('falsr') else 'generic'} space, this controller runs on a "
                              f"{'FALSR' if self.falsr else 'generic'} one ({type(self.space).__name__})")
        super().load_state_dict(state)
        self.init_queue = [self.space.from_json(g) for g in state["init_queue"]]
        self.origins = dict(state["origins"])
        self.origin_counts = {k: int(v) for k, v in state["origin_counts"].items()}
        if self.falsr:
            try:
                self.learner.load_state_dict(state["policy_gradient"])
            except ConfigError as exc:
                raise ConfigError(f"controller {self.registry_name!r}: the saved policy does not fit this space "
                                  f"(n_cells={self.n_cells}, {self.n_choices} cell choices): {exc}") from None
