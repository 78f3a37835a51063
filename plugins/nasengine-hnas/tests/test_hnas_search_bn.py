"""The search supernet's BatchNorms (``search_bn``; METHODS.md §2.3, §2.9 #11): named BN nodes are bank slots, so
two children that use a slot share one BatchNorm (its running statistics too); the retrained network has none."""
from __future__ import annotations

import torch

from nasengine.builder import build
from nasengine.supernet import Supernet
from nasengine_hnas.space import HnasSpace

SEARCH = HnasSpace(L=2, channels=4, search_bn=True)


def _genome(space, normal_op: str, up_pos: int):
    return space.from_json({"method": "hnas", "L": 2, "nodes": 4, "up_pos": up_pos,
                            "normal": [[normal_op, 1, 2], ["skip_connect", 0, 2], [normal_op, 2, 3], [normal_op, 0, 3],
                                       ["skip_connect", 3, 4], [normal_op, 1, 4], ["skip_connect", 2, 5],
                                       [normal_op, 4, 5]],
                            "upsampling": [["sub_pixel", 0, 2], ["deconvolution", 1, 2], ["area", 2, 3],
                                           ["bilinear", 1, 3], ["nearest", 0, 4], ["deconvolution", 3, 4],
                                           ["sub_pixel", 1, 5], ["area", 4, 5]]})


def _bns(model) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_children_share_the_bank_batchnorms_and_their_running_statistics():
    torch.manual_seed(0)
    sn = Supernet(SEARCH)
    a = sn.child(_genome(SEARCH, "sep_conv_3x3", 1))  # normal cell at position 0, upsampling cell at 1
    b = sn.child(_genome(SEARCH, "dil_conv_3x3", 0))  # the other way round
    bank = {id(m) for m in _bns(sn)}
    assert _bns(a) and _bns(b) and {id(m) for m in _bns(a) + _bns(b)} <= bank
    shared = {id(m) for m in _bns(a)} & {id(m) for m in _bns(b)}
    assert shared  # at least the stem's BN; a's normal-cell BNs are not b's
    stem = sn.state_dict()["slots.stem/bn.running_mean"].clone()
    a.train()
    a(torch.rand(2, 3, 8, 8))
    moved = sn.state_dict()["slots.stem/bn.running_mean"]
    assert not torch.equal(stem, moved)
    stem_bn = next(m for m in _bns(b) if id(m) in shared and m.affine)  # the stem's BN (the only affine one)
    assert torch.equal(stem_bn.running_mean, moved)
    # b in eval mode normalises with the statistics a's forward collected: changing them changes b's output
    b.eval()
    x = torch.rand(1, 3, 8, 8)
    before = b(x)
    stem_bn.running_var.mul_(4.0)
    assert not torch.allclose(before, b(x))


def test_the_retrained_network_has_no_batchnorm():
    genome = _genome(SEARCH, "rcab", 1)
    assert any(r.spec.name == "batch_norm" for r in SEARCH.decode(genome).resolve())
    derived = HnasSpace(L=2, channels=8, search_bn=False)  # the presets' loop.retrain_space
    graph = derived.decode(derived.from_json(SEARCH.to_json(genome)))
    assert not any(r.spec.name == "batch_norm" for r in graph.resolve())
    assert not _bns(build(graph))
