"""`nasengine score`: SR images made elsewhere, scored against HR with the protocol (issue 11 item 9)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.cli import EXIT_OK, EXIT_USAGE, main
from tests.cli_helpers import run_cli
from nasengine.errors import DataError
from nasengine.plugins import get_plugins
from nasengine.sr.data import resolve_benchmark
from nasengine.sr.evaluate import evaluate, prepare_pair
from nasengine.sr.image import save_image
from nasengine.sr.models import to_uint8
from nasengine.sr.score import pair_files, pair_key, score_folder



@pytest.fixture(scope="module")
def bicubic_set5(tmp_path_factory) -> Path:
    """Set5 upscaled x2 by bicubic from the protocol's LR, saved as `NAME_x2_SR.png` (another tool's output)."""
    folder = tmp_path_factory.mktemp("sr")
    up = get_plugins().models.get("bicubic")(scale=2, weights=None, device="cpu")
    for path in resolve_benchmark("Set5")[1]:
        lr, _ = prepare_pair(path, 2)
        save_image(folder / f"{Path(path).stem}_x2_SR.png", to_uint8(up.upscale(lr)))
    return folder


def test_scoring_bicubic_output_gives_the_evaluate_figures(bicubic_set5, capsys):
    assert main(["score", "--sr", str(bicubic_set5), "--hr", "Set5", "--scale", "2", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    want = evaluate(get_plugins().models.get("bicubic")(scale=2, weights=None, device="cpu"), "Set5", scale=2)
    assert data["sets"]["Set5"]["psnr"] == want.sets[0].psnr
    assert data["sets"]["Set5"]["ssim"] == want.sets[0].ssim
    # PROTOCOL.md regression target, Set5 x2 bicubic
    assert data["sets"]["Set5"]["psnr"] == pytest.approx(33.6396, abs=1e-4)
    assert data["sets"]["Set5"]["ssim"] == pytest.approx(0.92922, abs=1e-5)
    assert [r["image"] for r in data["images"]] == ["baby", "bird", "butterfly", "head", "woman"]


def test_per_image_table(bicubic_set5, capsys):
    assert main(["score", "--sr", str(bicubic_set5), "--hr", "Set5", "--scale", "2", "--per-image"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "33.6396" in out and "0.92922" in out and "butterfly" in out


def _hr_folder(folder: Path, names, size=(40, 36), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        save_image(folder / f"{n}.png", rng.integers(0, 256, size + (3,), dtype=np.uint8))
    return folder


def test_hr_folder_and_sr_of_full_hr_size(tmp_path):
    hr = _hr_folder(tmp_path / "hr", ["a_HR", "b_HR"], size=(41, 37))
    sr = tmp_path / "sr"
    sr.mkdir()
    # identical SR of the un-modcropped size: modcropped like the HR, then exact (inf PSNR, SSIM 1)
    for n in ("a", "b"):
        (sr / f"{n}_SR.png").write_bytes((hr / f"{n}_HR.png").read_bytes())
    rep = score_folder(sr, hr, scale=2)
    assert rep.sets[0].images == 2 and rep.sets[0].psnr == float("inf")
    assert rep.sets[0].ssim == pytest.approx(1.0)


def test_size_mismatch_names_the_file(tmp_path, capsys):
    hr = _hr_folder(tmp_path / "hr", ["a"], size=(40, 40))
    sr = _hr_folder(tmp_path / "sr", ["a_x2"], size=(40, 38))
    assert run_cli(["score", "--sr", str(sr), "--hr", str(hr), "--scale", "2"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "a_x2.png" in err and "38x40" in err and "40x40" in err and len(err.strip().splitlines()) == 1


def test_unmatched_and_missing_files_are_listed(tmp_path, capsys):
    hr = _hr_folder(tmp_path / "hr", ["a", "b"])
    sr = _hr_folder(tmp_path / "sr", ["a_SR", "zebra_SR"])
    assert run_cli(["score", "--sr", str(sr), "--hr", str(hr), "--scale", "2"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "zebra_SR.png" in err and "without an HR image" in err
    (sr / "zebra_SR.png").unlink()
    assert run_cli(["score", "--sr", str(sr), "--hr", str(hr), "--scale", "2"]) == EXIT_USAGE
    assert "HR images without an SR file: b.png" in capsys.readouterr().err


def test_two_sr_files_for_one_hr_is_an_error(tmp_path):
    with pytest.raises(DataError, match="several SR files for HR image a.png: a_SR.png, a_x2.png"):
        pair_files([Path("a_SR.png"), Path("a_x2.png")], [Path("a.png")])


def test_missing_sr_folder_and_bad_scale(tmp_path, capsys):
    assert run_cli(["score", "--sr", str(tmp_path / "nope"), "--hr", "Set5", "--scale", "2"]) == EXIT_USAGE
    assert "nope: no such folder" in capsys.readouterr().err
    assert run_cli(["score", "--sr", str(tmp_path), "--hr", "Set5", "--scale", "1"]) == EXIT_USAGE


@pytest.mark.parametrize("stem, key", [
    ("baby_SR", "baby"), ("baby_HR", "baby"), ("baby", "baby"), ("baby_x2", "baby"), ("Baby_X4_bicubic", "baby"),
    ("img_001_SRF_2_SR", "img_001"), ("img_001_SRF_2_HR", "img_001"), ("img_001", "img_001"),
    ("x2", "x2"), ("SR", "sr"), ("my_sr_net", "my"), ("box_xray", "box_xray"),
])
def test_pair_key(stem, key):
    assert pair_key(stem) == key


_part = st.text("abcdefghijklmnopqrstuvwyz0123456789", min_size=1, max_size=6).filter(
    lambda s: pair_key("a_" + s) == "a_" + s)  # not a marker
_base = st.lists(_part, min_size=1, max_size=3).map("_".join)
_sr_suffix = st.sampled_from(["", "_SR", "_sr", "_x2", "_x2_bicubic", "_SRF_2_SR", "_X2_SR", "_LR_x2"])
_hr_suffix = st.sampled_from(["", "_HR", "_SRF_2_HR", "_x2_HR"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_base, _sr_suffix, _hr_suffix), min_size=1, max_size=6,
                unique_by=lambda t: t[0].lower()), st.randoms(use_true_random=False))
def test_pairing_by_name(items, rnd):
    hr = [Path(f"{b}{h}.png") for b, _, h in items]
    sr = [Path(f"{b}{s}.png") for b, s, _ in items]
    rnd.shuffle(sr)
    pairs = pair_files(sr, hr)
    assert [h for _, h in pairs] == hr  # HR order
    for s, h in pairs:
        assert pair_key(s.stem) == pair_key(h.stem) or s.stem == h.stem
    assert sorted(s.name for s, _ in pairs) == sorted(p.name for p in sr)
