"""Build a torch module from an architecture graph.

:func:`build` turns a validated :class:`~nasengine.graph.ArchGraph` into a :class:`torch.fx.GraphModule`:
one submodule per op node (made by the op's own ``build`` function), called in topological order by
generated Python code — nothing walks the networkx graph at run time, so the forward pass costs what a
hand-written module's does. The result trains like any module and works with ``torch.jit.script``,
``torch.jit.trace`` and ``torch.onnx.export`` (as far as its ops do)::

    from nasengine.builder import build

    model = build(graph)                      # forward(x): N x C x H x W -> N x C' x sH x sW
    print(model.code)                         # the generated forward
    [n for n, _ in model.named_parameters()]  # ['n1_conv.weight', 'n1_conv.bias', ...]

Submodules are named ``n{node}_{op}`` and registered in the graph's deterministic topological order
(smallest node id first), so parameter names and order depend only on the graph; build
``graph.canonical()`` to get names that depend only on the architecture.
"""
from __future__ import annotations

from typing import Any, Callable

from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph, ResolvedNode, module_name
from nasengine.ops import OpRegistry

__all__ = ["build"]


def build(graph: ArchGraph, registry: OpRegistry | None = None, *,
          weight_init: Callable[..., None] | None = None,
          module_for: Callable[[ResolvedNode], Any] | None = None):
    """A :class:`torch.fx.GraphModule` computing ``graph`` (validated first; see :meth:`ArchGraph.validate`).

    ``registry``: where the ops come from (default: the graph's registry). ``weight_init``: optional
    callable applied with :meth:`torch.nn.Module.apply` to each op's module (so it sees every submodule,
    e.g. ``lambda m: nn.init.kaiming_normal_(m.weight) if isinstance(m, nn.Conv2d) else None``).
    The forward takes one tensor ``x`` (N x C_in x H x W) and returns the output tensor; variadic ops'
    modules receive their inputs as one list.

    ``module_for``: optional per-node factory called with each op node's
    :class:`~nasengine.graph.ResolvedNode`; a module it returns is used for that node as is (``weight_init``
    is not applied to it: a weight-sharing supernet hands in its shared modules this way), ``None`` builds
    the node as usual.
    """
    import torch
    import torch.fx

    resolved = graph.resolve(registry)
    root = torch.nn.Module()
    fx_graph = torch.fx.Graph()
    env: dict[int, torch.fx.Node] = {}
    result = None
    for r in resolved:
        if r.spec.name == "input":
            env[r.node] = fx_graph.placeholder("x")
            continue
        if r.spec.name == "output":
            result = env[r.inputs[0]]
            continue
        where = f"node {r.node} ({r.spec.name})"
        module = module_for(r) if module_for is not None else None
        if module is None:
            try:
                module = r.spec.build(r.attrs, r.in_shapes)
            except ValidationError as exc:
                raise ValidationError(str(exc), field=where) from None
            if weight_init is not None and isinstance(module, torch.nn.Module):
                module.apply(weight_init)
            source = f"the builder of {r.spec.name!r}"
        else:
            source = "module_for"
        if not isinstance(module, torch.nn.Module):
            raise ValidationError(f"{source} returned {type(module).__name__}, not an nn.Module", field=where)
        name = module_name(r.node, r.spec.name)
        root.add_module(name, module)
        args = [env[u] for u in r.inputs]
        env[r.node] = fx_graph.call_module(name, (args,) if r.spec.variadic else tuple(args))
    fx_graph.output(result)
    return torch.fx.GraphModule(root, fx_graph, class_name="ArchModule")
