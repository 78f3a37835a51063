"""Random valid SR architecture graphs: a hypothesis strategy (:func:`arch_graphs`) and a seeded generator
(:func:`random_arch_graph`) that draw from the same recipe.

Use them to test anything that consumes graphs — a cost model, a builder, an evaluator, an op of your own::

    from hypothesis import given
    from nasengine.testing import arch_graphs

    @given(arch_graphs())
    def test_my_cost_model_is_positive(graph):
        assert MyCostModel().cost(graph).mult_adds >= 0

A graph is built in stages, one per upsampling step (the target scale is drawn from ``scales`` and split
into factors): inside a stage, a drawn number of blocks use the built-in ops — convs (groups, dilation,
bias), separable convs, activations (PReLU included), fixed scaling, channel attention, a pooled gate
(global pool -> 1x1 conv -> sigmoid -> multiply), a stride-2 down/up pair (conv, then transposed conv or
interpolation), and add / mean / multiply / concat merges (the same input twice included). The stage's
unconsumed nodes are concatenated and upsampled (conv + pixel shuffle, transposed conv or interpolation).
A graph may end with a conv back to the input channels and a global residual from an interpolated input.

Every graph validates with the built-in registry. Because of the stride-2 pairs, use **even** LR sizes.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

from nasengine.graph import ArchGraph
from nasengine.ops import OpRegistry

__all__ = ["arch_graphs", "random_arch_graph", "BLOCKS"]

#: The kinds of blocks a stage is made of (pass a subset as ``blocks=`` to restrict the graphs).
BLOCKS = ("conv", "sep_conv", "activation", "scale", "channel_attention", "gate", "down_up", "merge")

_ACTIVATIONS = ("relu", "relu6", "tanh", "sigmoid", "identity", "prelu")
_INTERP_MODES = ("nearest", "bilinear", "bicubic", "area")


class _Picker:
    """Draws choices from hypothesis (``draw``) or from a ``random.Random``."""

    def __init__(self, integer: Callable[[int, int], int]):
        self.integer = integer

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.integer(0, len(seq) - 1)]

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1


def _factorizations(n: int) -> list[list[int]]:
    """Ordered factorisations of ``n`` into factors >= 2 (``[[]]`` for 1)."""
    if n == 1:
        return [[]]
    out = []
    for f in range(2, n + 1):
        if n % f == 0:
            out.extend([f] + rest for rest in _factorizations(n // f))
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class _Builder:
    def __init__(self, p: _Picker, g: ArchGraph, max_width: int, blocks: Sequence[str]):
        self.p, self.g, self.max_width, self.blocks = p, g, max_width, tuple(blocks)
        self.channels: dict[int, int] = {}

    def add(self, op: str, *inputs: int, channels: int, **attrs) -> int:
        node = self.g.add(op, *inputs, **attrs)
        self.channels[node] = channels
        return node

    def width(self) -> int:
        return self.p.integer(1, self.max_width)

    def conv(self, x: int, out: int | None = None, kernel: int | None = None, stride: int = 1) -> int:
        p, c_in = self.p, self.channels[x]
        out = self.width() if out is None else out
        kernel = p.choice((1, 3, 5)) if kernel is None else kernel
        groups = p.choice(_divisors(math.gcd(c_in, out)))
        dilation = p.choice((1, 1, 2)) if kernel > 1 else 1
        return self.add("conv", x, channels=out, out_channels=out, kernel=kernel, stride=stride, groups=groups,
                        dilation=dilation, bias=p.boolean())

    def block(self, stage: list[int]) -> list[int]:
        """Add one drawn block reading nodes of ``stage``; returns the new same-scale nodes."""
        p, g = self.p, self.g
        kind = p.choice(self.blocks)
        x = p.choice(stage)
        c = self.channels[x]
        if kind == "conv":
            return [self.conv(x)]
        if kind == "sep_conv":
            out = self.width()
            return [self.add("sep_conv", x, channels=out, out_channels=out, kernel=p.choice((1, 3)),
                             dilation=p.choice((1, 2)), bias=p.boolean())]
        if kind == "activation":
            op = p.choice(_ACTIVATIONS)
            if op == "prelu":
                return [self.add("prelu", x, channels=c, num_parameters=p.choice((1, c)))]
            return [self.add(op, x, channels=c)]
        if kind == "scale":
            return [self.add("scale", x, channels=c, value=p.choice((0.5, -1.0, 0.1, 2.0)))]
        if kind == "channel_attention":
            return [self.add("channel_attention", x, channels=c, reduction=p.integer(1, c), bias=p.boolean())]
        if kind == "gate":
            pooled = self.add("global_avg_pool", x, channels=c)
            if p.boolean():
                pooled = self.conv(pooled, out=c, kernel=1)
            gate = self.add("sigmoid", pooled, channels=c)
            ins = (x, gate) if p.boolean() else (gate, x)
            return [self.add("multiply", *ins, channels=c)]
        if kind == "down_up":
            if p.boolean():
                down = self.conv(x, kernel=p.choice((1, 3)), stride=2)
            else:
                w = self.width()
                down = self.add("sep_conv", x, channels=w, out_channels=w, kernel=3, stride=2, bias=p.boolean())
            down = self.add("relu", down, channels=self.channels[down])
            return [self.upsample(down, 2)]
        # merge
        op = p.choice(("add", "mean", "multiply", "concat"))
        n = p.integer(2, 3)
        if op == "concat":
            ins = [p.choice(stage) for _ in range(n)]
            return [self.add("concat", ins, channels=sum(self.channels[i] for i in ins))]
        same = [s for s in stage if self.channels[s] == c]
        ins = [x] + [p.choice(same) for _ in range(n - 1)]  # the same node twice is allowed (x + x)
        return [self.add(op, ins, channels=c)]

    def upsample(self, x: int, r: int) -> int:
        p = self.p
        how = p.choice(("pixel_shuffle", "conv_transpose", "interpolate"))
        if how == "pixel_shuffle":
            out = p.integer(1, max(1, self.max_width // 3))
            h = self.conv(x, out=out * r * r, kernel=p.choice((1, 3)))
            return self.add("pixel_shuffle", h, channels=out, factor=r)
        if how == "conv_transpose":
            out = self.width()
            kernel = p.choice(sorted({r, r + 1, 2 * r, 2 * r + 1}))
            return self.add("conv_transpose", x, channels=out, out_channels=out, kernel=kernel, stride=r,
                            bias=p.boolean())
        return self.add("interpolate", x, channels=self.channels[x], factor=r, mode=p.choice(_INTERP_MODES))


def _generate(p: _Picker, *, scales: Sequence[int], channels: Sequence[int], max_blocks: int, max_width: int,
              blocks: Sequence[str], registry: OpRegistry | None) -> ArchGraph:
    g = ArchGraph(registry)
    b = _Builder(p, g, max_width, blocks)
    c_in = p.choice(tuple(channels))
    x = g.input(channels=c_in)
    b.channels[x] = c_in
    scale = p.choice(tuple(scales))
    factors = p.choice(_factorizations(scale))
    head = x
    for stage_index in range(len(factors) + 1):
        stage = [head]
        for _ in range(p.integer(0, max_blocks)):
            stage.extend(b.block(stage))
        sinks = [n for n in stage if not g.consumers(n)]
        head = sinks[0] if len(sinks) == 1 else b.add("concat", sinks, channels=sum(b.channels[s] for s in sinks))
        if stage_index < len(factors):
            head = b.upsample(head, factors[stage_index])
    if p.boolean():
        head = b.conv(head, out=c_in, kernel=3)
        if p.boolean():
            skip = x if scale == 1 else b.add("interpolate", x, channels=c_in, factor=scale,
                                              mode=p.choice(_INTERP_MODES))
            head = b.add("add", head, skip, channels=c_in)
    g.output(head)
    return g


def _check_options(scales, channels, max_blocks, max_width, blocks):
    if not scales or any(not isinstance(s, int) or s < 1 for s in scales):
        raise ValueError(f"scales must be integers >= 1, got {scales!r}")
    if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels must be integers >= 1, got {channels!r}")
    if max_blocks < 0 or max_width < 1:
        raise ValueError("max_blocks must be >= 0 and max_width >= 1")
    unknown = set(blocks) - set(BLOCKS)
    if unknown or not blocks:
        raise ValueError(f"blocks must be a non-empty subset of {BLOCKS}, got {blocks!r}")


def arch_graphs(*, scales: Sequence[int] = (1, 2, 3, 4), channels: Sequence[int] = (1, 3), max_blocks: int = 4,
                max_width: int = 8, blocks: Sequence[str] = BLOCKS, registry: OpRegistry | None = None):
    """A hypothesis strategy of valid :class:`~nasengine.graph.ArchGraph` SR graphs (see the module
    docstring): output scale drawn from ``scales``, input channels from ``channels``, up to ``max_blocks``
    blocks per stage, conv widths up to ``max_width``, block kinds from ``blocks``. Shrinks towards small,
    plain graphs."""
    from hypothesis import strategies as st

    _check_options(scales, channels, max_blocks, max_width, blocks)

    @st.composite
    def strategy(draw):
        p = _Picker(lambda lo, hi: draw(st.integers(lo, hi)))
        return _generate(p, scales=scales, channels=channels, max_blocks=max_blocks, max_width=max_width,
                         blocks=blocks, registry=registry)

    return strategy()


def random_arch_graph(seed: int | random.Random = 0, *, scales: Sequence[int] = (1, 2, 3, 4),
                      channels: Sequence[int] = (1, 3), max_blocks: int = 4, max_width: int = 8,
                      blocks: Sequence[str] = BLOCKS, registry: OpRegistry | None = None) -> ArchGraph:
    """One graph of :func:`arch_graphs`' recipe drawn with ``random.Random(seed)`` (no hypothesis needed;
    for benchmarks and examples). Same seed and options, same graph."""
    _check_options(scales, channels, max_blocks, max_width, blocks)
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return _generate(_Picker(rng.randint), scales=scales, channels=channels, max_blocks=max_blocks,
                     max_width=max_width, blocks=blocks, registry=registry)
