"""The tf_reshape weight layout (nasengine_deconas/layouts.py) against per_slot and METHODS.md §1.3's formula,
on the engine's tiny dense test space (tests/supernet_space.py: conv3x3, sepconv3x3, dilated conv per input)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasengine.layouts import SlotInput, SlotView
from nasengine.supernet import SharedConv, Supernet
from nasengine_deconas.layouts import TfReshapeLayout
from tests.supernet_space import TinyDenseGenome, TinyDenseSpace

C = 4


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pair():
    """(per_slot supernet, tf_reshape supernet) holding the same bank tensors."""
    space = TinyDenseSpace(M=3, channels=C)
    torch.manual_seed(0)
    per_slot = Supernet(space)
    tf = Supernet(space, layout=TfReshapeLayout())
    tf.load_state_dict(per_slot.state_dict())
    return space, per_slot, tf


def x_lr():
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def test_with_one_input_per_op_the_layouts_agree(pair):
    space, per_slot, tf = pair
    single = TinyDenseGenome((7, 6, 1, 4, 2, 1))  # every (node, op) reads at most one input
    torch.testing.assert_close(tf.child(single)(x_lr()), per_slot.child(single)(x_lr()), rtol=0, atol=0)


def test_with_several_inputs_the_layouts_differ(pair):
    space, per_slot, tf = pair
    for genome in (space.densest(), TinyDenseGenome((7, 6, 4, 4, 0, 4))):  # n2.conv on {f0, n1.ca}
        assert not torch.allclose(tf.child(genome)(x_lr()), per_slot.child(genome)(x_lr()))


def _view(conv, chosen):
    sources = tuple(SlotInput(f"in{j}", j, j * C, (j + 1) * C) for j in range(3))
    return SlotView("n2.conv", "conv", {"kernel": 3, "dilation": 1, "groups": 1}, conv, sources,
                    tuple(sources[j] for j in chosen))


def test_inputs_0_and_2_per_slot_is_the_sum_of_single_convs_and_tf_reshape_is_not(pair):
    _, per_slot, _ = pair
    conv = per_slot.slot_module("n2.conv")
    x0, x2 = torch.randn(2, C, 6, 6), torch.randn(2, C, 6, 6)
    w, b = conv.weight, conv.bias.view(1, -1, 1, 1)
    summed = F.conv2d(x0, w[:, :C], padding=1) + F.conv2d(x2, w[:, 2 * C:], padding=1) + b
    x = torch.cat([x0, x2], 1)
    ours = TfReshapeLayout().slot_module(_view(conv, (0, 2)))(x)
    from nasengine.layouts import PerSlotLayout

    torch.testing.assert_close(PerSlotLayout().slot_module(_view(conv, (0, 2)))(x), summed, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, summed, atol=1e-3)


def test_tf_reshape_kernel_is_the_row_major_reshape_of_methods_1_3(pair):
    """METHODS.md §1.3: kernel[a,b,c,d] = flat[((3a+b)*C*n + c)*C + d] of the concatenated rows, row j = slot
    j's kernel as HWIO, flattened (checked element by element with numpy)."""
    _, per_slot, _ = pair
    conv = per_slot.slot_module("n2.conv")
    w = conv.weight.detach().numpy()                               # OIHW, per_slot
    chosen, n = (0, 2), 2
    flat = np.concatenate([w[:, j * C:(j + 1) * C].transpose(2, 3, 1, 0).reshape(-1) for j in chosen])
    module = TfReshapeLayout().slot_module(_view(conv, chosen))
    assert isinstance(module, SharedConv)
    hwio = module.weight().detach().numpy().transpose(2, 3, 1, 0)  # back to HWIO
    for a, b_, c, d in np.ndindex(*hwio.shape):
        assert hwio[a, b_, c, d] == flat[((3 * a + b_) * C * n + c) * C + d]


def test_sep_depthwise_is_reshaped_pointwise_and_dilated_conv_stay_per_slot(pair):
    _, per_slot, _ = pair
    sep = per_slot.slot_module("n2.sep")
    sources = tuple(SlotInput(f"in{j}", j, j * C, (j + 1) * C) for j in range(3))
    view = SlotView("n2.sep", "sep_conv", {"kernel": 3}, sep, sources, (sources[0], sources[2]))
    module = TfReshapeLayout().slot_module(view)
    dw = sep.depthwise.weight.detach().numpy()                     # [3C, 1, 3, 3]
    flat = np.concatenate([dw[j * C:(j + 1) * C, 0].transpose(1, 2, 0).reshape(-1) for j in (0, 2)])
    got = module.depthwise_weight().detach().numpy()[:, 0].transpose(1, 2, 0)  # [3, 3, 2C]
    np.testing.assert_array_equal(got, flat.reshape(3, 3, 2 * C))
    idx = list(range(C)) + list(range(2 * C, 3 * C))
    assert torch.equal(module.pointwise_weight(), sep.pointwise.weight[:, idx])
    dil = per_slot.slot_module("n2.dil")
    dview = SlotView("n2.dil", "conv", {"kernel": 3, "dilation": 2, "groups": 1}, dil, sources,
                     (sources[0], sources[2]))
    assert torch.equal(TfReshapeLayout().slot_module(dview).weight(), dil.weight[:, idx])


def test_unselected_inputs_get_no_gradient(pair):
    _, _, tf = pair
    genome = TinyDenseGenome((7, 6, 4, 5, 0, 5))                   # n2.conv and n2.dil on {f0, n1.ca}
    tf.child(genome)(x_lr()).abs().mean().backward()
    g = tf.slot_module("n2.conv").weight.grad
    assert g[:, C:2 * C].abs().sum() == 0 and g[:, :C].abs().sum() > 0 and g[:, 2 * C:].abs().sum() > 0
