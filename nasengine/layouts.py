"""Weight layouts: how a weight-sharing supernet computes a slot that a child uses on part of its inputs.

A supernet (:mod:`nasengine.supernet`) allocates each slot (named parameterised node) once, at the widest input
the space can give it (the densest genome's graph). A child that feeds the slot only some of those inputs
(a concat of a subset) needs the slot's computation on that subset; the **layout** says which weights that
uses. The engine's layout, ``per_slot``, gives every input slot its own part of the kernel: a conv over
several selected inputs is the sum of per-input convs plus one bias, i.e. the widest kernel's input channels
sliced to the selected inputs' ranges. A plugin adds a layout (a paper's released code may share weights
another way) by subclassing :class:`WeightLayout` and registering the class::

    @nasengine.hookimpl
    def nasengine_register_weight_layouts(registry):
        registry.add("mine", MyLayout)

and a space selects it with its ``weight_layout`` attribute (or ``Supernet(space, layout="mine")``).

The bank's tensors are always stored as the op's ordinary builder makes them at the densest input shapes, so
every layout reads the same checkpoint format. This module imports no torch (the plugin manager loads it).
"""
from __future__ import annotations

from typing import Any, Mapping

import attrs

from nasengine.errors import ValidationError

__all__ = ["SlotInput", "SlotView", "WeightLayout", "PerSlotLayout"]


@attrs.frozen
class SlotInput:
    """One input of a slot as the densest graph has it: ``source`` (the producer's slot name, or for an
    unnamed producer a structural label built from its op and its inputs' labels), ``position`` (its index
    among the slot's inputs in the densest graph) and its channel range ``[start, stop)`` in the slot's widest
    input."""

    source: str
    position: int
    start: int
    stop: int

    @property
    def width(self) -> int:
        return self.stop - self.start


@attrs.frozen(eq=False)
class SlotView:
    """What a layout sees of one slot in one child: the slot's ``name``, ``op`` and ``attrs``, the bank's
    ``module`` (built at the densest input shapes), every input the slot has in the densest graph
    (``sources``, in channel order) and the child's inputs (``selected``, in the child's channel order)."""

    name: str
    op: str
    attrs: Mapping[str, Any]
    module: Any
    sources: tuple[SlotInput, ...]
    selected: tuple[SlotInput, ...]

    @property
    def full(self) -> bool:
        """True when the child feeds the slot exactly its densest input (the bank module applies as is)."""
        return self.selected == self.sources

    @property
    def channels(self) -> list[int]:
        """The bank input channels the child's input channels correspond to, in the child's order."""
        return [c for s in self.selected for c in range(s.start, s.stop)]

    def error(self, message: str) -> ValidationError:
        """A :class:`ValidationError` naming this slot."""
        return ValidationError(message, field=f"slot {self.name!r} ({self.op})")


class WeightLayout:
    """The role: turns a slot of a child into the module the child calls (see the module docstring).

    :meth:`slot_module` returns the bank module itself when it applies as is, or a module that holds it (so
    the child's parameters are the bank's, and only the parts it uses receive gradients) and computes the slot
    on the selected inputs. Helpers: :class:`nasengine.supernet.SharedConv` and
    :class:`nasengine.supernet.SharedSepConv`. A module returned may define ``standalone_state_dict()``: the
    state dict the op's ordinary builder's module would need to compute the same function (what
    :meth:`nasengine.supernet.Supernet.standalone_state_dict` exports).
    """

    def slot_module(self, slot: SlotView):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PerSlotLayout(WeightLayout):
    """The engine's layout: one kernel per input slot (the widest kernel's input channels sliced to the
    selected inputs' ranges), for ``conv`` (groups 1, any kernel and dilation) and ``sep_conv`` (depthwise
    and pointwise sliced together). Any op applies as is when the child gives it its full densest input."""

    name = "per_slot"

    def slot_module(self, slot: SlotView):
        if slot.full:
            return slot.module
        from nasengine.supernet import SharedConv, SharedSepConv

        if slot.op == "conv":
            if slot.attrs.get("groups", 1) != 1:
                raise slot.error(f"layout per_slot cannot slice a grouped conv (groups={slot.attrs['groups']}) "
                                 "to part of its inputs")
            return SharedConv(slot.module, channels=slot.channels)
        if slot.op == "sep_conv":
            return SharedSepConv(slot.module, channels=slot.channels)
        raise slot.error(f"layout per_slot cannot slice op {slot.op!r} to part of its inputs (it slices conv "
                         "and sep_conv); the child gives it " + _inputs(slot.selected) + " of " +
                         _inputs(slot.sources))


def _inputs(inputs) -> str:
    return "[" + ", ".join(s.source for s in inputs) + "]"
