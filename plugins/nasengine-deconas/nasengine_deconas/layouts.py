"""The ``tf_reshape`` weight layout: DeCoNAS's released supernet's weight sharing, bug for bug (METHODS.md §1.3).

The released search keeps one weight per (DNB d, node m, op) with one row per input slot j (``[m+1, 3*3*C*C]``
for conv3x3, ``[m+1, 3*3*C]`` for the depthwise kernel of sepconv3x3). For a child that selects n inputs it
gathers their rows (ascending j) and **row-major reshapes** the ``[n, 9*C*C]`` block to ``[3, 3, C*n, C]``
(HWIO), then convolves the concat of the selected inputs. For n = 1 that is the slot's own kernel; for n >= 2
the reshape interleaves the rows across kernel taps, so the weights input j meets depend on which and how
many other inputs are selected. The pointwise kernel of sepconv, the dilated conv and every 1x1 conv (fusion,
block connections) are consistent per slot in the released code, i.e. the engine's ``per_slot``.

The bank stores every tensor in the engine's per_slot torch layout (row j of a conv = the bank kernel's input
channels of slot j, as HWIO, flattened), so both layouts read and write the same checkpoints; the rows and
the reshape are one precomputed gather. Select it with the deconas space's ``weight_layout: tf_reshape``.
"""
from __future__ import annotations

from nasengine.layouts import PerSlotLayout, SlotView

__all__ = ["TfReshapeLayout", "conv_take", "depthwise_take"]


def _check_rows(slot: SlotView) -> int:
    widths = {s.width for s in slot.sources}
    if len(widths) != 1:
        raise slot.error("layout tf_reshape needs inputs of equal width (one weight row per input), got "
                         + ", ".join(f"{s.source}: {s.width}" for s in slot.sources))
    return widths.pop()


def conv_take(slot: SlotView):
    """Index into the flattened bank conv weight (OIHW) giving the released code's kernel for the selected
    inputs: rows (slot kernels as HWIO, flattened) concatenated in the child's input order, reshaped row-major
    to ``[kh, kw, C*n, O]``, then turned to torch's OIHW."""
    import torch

    w = slot.module.weight
    ids = torch.arange(w.numel(), device=w.device).view(w.shape)
    rows = [ids[:, s.start:s.stop].permute(2, 3, 1, 0).reshape(-1) for s in slot.selected]
    o, _, kh, kw = w.shape
    return torch.cat(rows).view(kh, kw, -1, o).permute(3, 2, 0, 1).contiguous()


def depthwise_take(slot: SlotView):
    """The same for the depthwise kernel of a separable conv (``[I, 1, kh, kw]``; rows ``[kh, kw, C]``)."""
    import torch

    w = slot.module.depthwise.weight
    ids = torch.arange(w.numel(), device=w.device).view(w.shape)
    rows = [ids[s.start:s.stop, 0].permute(1, 2, 0).reshape(-1) for s in slot.selected]
    _, _, kh, kw = w.shape
    return torch.cat(rows).view(kh, kw, -1).permute(2, 0, 1).unsqueeze(1).contiguous()


class TfReshapeLayout(PerSlotLayout):
    """``tf_reshape``: conv3x3 (dilation 1) and sepconv3x3's depthwise kernel over n >= 2 selected inputs use
    the released code's reshaped rows; everything else is ``per_slot`` (METHODS.md §1.3)."""

    name = "tf_reshape"

    def slot_module(self, slot: SlotView):
        from nasengine.supernet import SharedConv, SharedSepConv

        if len(slot.selected) < 2:
            return super().slot_module(slot)  # one row: the slot's own kernel, as per_slot
        if slot.op == "conv" and slot.attrs.get("dilation", 1) == 1 and slot.attrs.get("kernel", 1) > 1 \
                and slot.attrs.get("groups", 1) == 1:
            _check_rows(slot)
            return SharedConv(slot.module, take=conv_take(slot))
        if slot.op == "sep_conv":
            _check_rows(slot)
            return SharedSepConv(slot.module, channels=slot.channels, depthwise_take=depthwise_take(slot))
        # Dilated conv (full kernel on the zero-filled concat), 1x1 convs: consistent per slot (§1.3).
        return super().slot_module(slot)
