"""Two generic graph operations that a pruned network needs and the engine's built-in ops lack.

* ``channel_scatter_add`` — adds its inputs into chosen channels of a wider output: input ``i``'s channel
  ``k`` is added to output channel ``index[i][k]``. A pruned residual block writes the skip (on the set
  ``S_{b-1}``) and the residual (on ``O_b``) into their union ``S_b = S_{b-1} ∪ O_b`` this way (METHODS §3.6:
  "scatter-add of x and r"); channels that only one side has are copied, shared ones summed. Free (no
  parameters, no Mult-Adds), like ``add``.
* ``bias_map`` — a learned per-channel constant, as large as its input image: what a convolution emits when
  every one of its input channels is pruned (``conv(0) + bias``; METHODS §3.9 pitfall 7). It counts exactly
  as such a convolution: ``channels`` bias parameters and no Mult-Adds. Its input only gives the spatial size.

``index`` is text, because op attributes are JSON scalars: one comma-separated list of output channels per
input, the lists separated by ``;`` (``"0,1,3;1,2"``: input 0 -> channels 0, 1, 3, input 1 -> channels 1,
2). Every output channel must receive at least one input channel, and one input may not name a channel twice.

Neither op is FGNAS-specific; they live in this plugin so that the engine's op set is unchanged (the
integrator may move them to the engine). This module imports no torch at import time.
"""
from __future__ import annotations

from typing import Sequence

from nasengine.errors import ValidationError
from nasengine.ops import REQUIRED, Attr, OpCost, OpSpec, Shape, positive

__all__ = ["SCATTER_ADD", "BIAS_MAP", "FGNAS_OPS", "format_index", "parse_index"]


def format_index(lists: Sequence[Sequence[int]]) -> str:
    """The ``index`` attribute of ``channel_scatter_add`` for per-input lists of output channels."""
    return ";".join(",".join(str(int(c)) for c in lst) for lst in lists)


def parse_index(text: str) -> list[list[int]]:
    """Inverse of :func:`format_index` (a :class:`ValidationError` for malformed text)."""
    out = []
    for part in text.split(";"):
        try:
            out.append([int(c) for c in part.split(",")] if part else [])
        except ValueError:
            raise ValidationError(f"index {text!r}: {part!r} is not a comma-separated list of channels") from None
    return out


def _scatter_infer(a, ins):
    lists = parse_index(a["index"])
    n = a["channels"]
    if len(lists) != len(ins):
        raise ValidationError(f"index {a['index']!r} has {len(lists)} list(s) for {len(ins)} input(s)")
    scales = {s.scale for s in ins}
    if len(scales) > 1:
        raise ValidationError("inputs have shapes " + " and ".join(str(s) for s in ins)
                              + " (channel_scatter_add needs equal spatial sizes)")
    covered = set()
    for i, (lst, shape) in enumerate(zip(lists, ins)):
        if len(lst) != shape.channels:
            raise ValidationError(f"index list {i} names {len(lst)} channels, input {i} has {shape.channels}")
        if len(set(lst)) != len(lst):
            raise ValidationError(f"index list {i} names a channel twice: {lst}")
        bad = [c for c in lst if not 0 <= c < n]
        if bad:
            raise ValidationError(f"index list {i} names channel(s) {bad} outside 0..{n - 1}")
        covered.update(lst)
    if len(covered) != n:
        missing = sorted(set(range(n)) - covered)
        raise ValidationError(f"output channel(s) {missing} receive no input")
    return Shape(n, ins[0].scale)


def _scatter_build(a, ins):
    from nasengine_fgnas.modules import ScatterAdd

    return ScatterAdd(a["channels"], parse_index(a["index"]))


SCATTER_ADD = OpSpec(
    "channel_scatter_add", (1, None),
    {
        "channels": Attr(int, REQUIRED, positive, "output channels"),
        "index": Attr(str, REQUIRED, None, "per input, its output channels: '0,1,3;1,2' (lists split by ';')"),
    },
    _scatter_infer, _scatter_build, lambda a, ins, out: OpCost(),
    doc="Adds input i's channel k into output channel index[i][k] (a union of channel sets: shared channels "
        "summed, the others copied); every output channel gets at least one input. Free. Its module takes a list.",
)


def _bias_build(a, ins):
    from nasengine_fgnas.modules import BiasMap

    return BiasMap(a["channels"])


BIAS_MAP = OpSpec(
    "bias_map", 1,
    {"channels": Attr(int, REQUIRED, positive, "output channels (one learned constant each)")},
    lambda a, ins: Shape(a["channels"], ins[0].scale), _bias_build,
    lambda a, ins, out: OpCost(params=a["channels"], bias_params=a["channels"]),
    # A soft output count (nasengine.cost.DifferentiableCost) sets the width, as a conv's out_channels.
    recount=lambda a, in_channels, out: a if out is None else {**a, "channels": out},
    doc="A learned constant per channel at its input's spatial size (the input is only a size): a conv whose "
        "input channels are all pruned, conv(0) + bias. Params: `channels` biases; no Mult-Adds.",
)

#: The ops this plugin registers.
FGNAS_OPS = [SCATTER_ADD, BIAS_MAP]
