"""Derivation with weights (METHODS §3.6): the pruned network of a trained supernet's hard masks, carrying the
supernet's weights, so that it computes exactly what the masked supernet computes.

The network is the space's decoded graph built by the engine's ordinary builder (:func:`nasengine.builder.build`);
its weights are sliced from the supernet by node name (:mod:`nasengine_fgnas.space` names the nodes):

* head ``W[H]``; block b: 1x1 ``W1[P_b, S_{b-1}]``, first 3x3 per activation group ``W2[G, P_b]``, PReLU
  slopes of the group's channels, second 3x3 ``W3[O_b, A_b]`` (A_b in the groups' order), each with the
  biases of its kept output channels; body end ``W[E, S_B]``; tail ``W[:, U]``;
* a conv whose input set is empty keeps its output channels' biases as a ``bias_map`` (they still emit
  constants: act(bias) after the first 3x3; METHODS §3.9 pitfall 7);
* the 1/3 activation factor is a ``scale`` node; skip and residual are scatter-added into ``S_b`` by the graph.

x3/x4 (§3.6 [P]): the genome is scale-free — decode it with a space of the target scale (the tail conv emits
3s² channels) and retrain from scratch; weights are derived only at the supernet's own scale.
"""
from __future__ import annotations

import attrs
import torch

from nasengine.builder import build
from nasengine.graph import ArchGraph, module_name
from nasengine_fgnas.genome import ACTIVATIONS, FgnasGenome
from nasengine_fgnas.space import type_name

__all__ = ["Derived", "derive"]


@attrs.frozen
class Derived:
    """A derived network: the (effective) ``genome``, its pruned ``graph`` and the built ``module`` (a
    :class:`torch.fx.GraphModule`) holding the supernet's weights."""

    genome: FgnasGenome
    graph: ArchGraph
    module: torch.nn.Module


def derive(supernet, genome: FgnasGenome | None = None) -> Derived:
    """The pruned network of ``supernet`` (an :class:`~nasengine_fgnas.supernet.FgnasSupernet`) for ``genome``
    (default: its hard masks, :meth:`~nasengine_fgnas.supernet.FgnasSupernet.genome`), with the supernet's
    weights sliced in (module docstring). The module is on the CPU in float32, in eval mode."""
    space = supernet.space
    genome = space.effective(supernet.genome() if genome is None else genome)
    graph = space.decode(genome)
    plan = space.plan(genome)
    module = build(graph)
    mods = {graph.name(n): getattr(module, module_name(n, graph.op(n))) for n in graph
            if graph.name(n) and graph.op(n) not in ("input", "output")}

    def conv(name: str, src: torch.nn.Conv2d, rows, cols) -> None:
        """Copy ``src``'s kernel ``[rows][:, cols]`` and ``bias[rows]`` into node ``name`` (a conv, or a
        bias_map when ``cols`` is empty)."""
        dst = mods[name]
        r = torch.as_tensor(rows, dtype=torch.long)
        if len(cols):
            c = torch.as_tensor(cols, dtype=torch.long)
            dst.weight.copy_(src.weight[r][:, c])
        dst.bias.copy_(src.bias[r])

    with torch.no_grad():
        if plan.H:
            conv("head", supernet.head, plan.H, range(3))
        for bp in plan.blocks:
            blk = supernet.blocks[bp.index]
            b = bp.index
            if not bp.groups:
                conv(f"b{b}.conv2", blk.conv2, bp.O, ())
                continue
            if bp.P:
                conv(f"b{b}.pw", blk.pw, bp.P, bp.S)
            for t, chans in bp.groups:
                tn = type_name(t)
                conv(f"b{b}.conv1.{tn}", blk.conv1, chans, bp.P)
                if t >> ACTIVATIONS.index("prelu") & 1:
                    mods[f"b{b}.prelu.{tn}"].weight.copy_(blk.prelu.weight[torch.as_tensor(chans)])
            conv(f"b{b}.conv2", blk.conv2, bp.O, bp.A)
        if plan.E:
            conv("body_end", supernet.body_end, plan.E, plan.S_B)
        conv("tail", supernet.tail, range(supernet.tail.out_channels), plan.U)
    module.eval()
    return Derived(genome, graph, module)
