"""Run folders from elsewhere (issue 11, item 5): reading one never runs code, and nothing is written through
a planted symlink."""
from __future__ import annotations

import logging
import math
import pickle
import sqlite3

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.cli import EXIT_USAGE, main
from nasengine.statecodec import StateCodecError, decode_state, encode_state
from nasengine.store import LOCK_FILE, ExperimentStore, RunLock, StoreError, UntrustedStateError
from tests.cli_helpers import tiny_genome_file


class _Touch:
    """Unpickling this creates ``path``: what a crafted run folder could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _run_folder(tmp_path, name="run"):
    from nasengine.plugins import get_plugins

    cfg = get_plugins().methods.get("simple").config("smoke", {})
    store = ExperimentStore.create(tmp_path / name, method="simple", preset="smoke", seed=0, config=cfg,
                                   plugins={}, environment={})
    return store


def _plant(store, generation, blob):
    store.conn.execute("INSERT OR REPLACE INTO controller_state (generation, state, created) VALUES (?, ?, 0)",
                       (generation, sqlite3.Binary(blob)))


# ---- the format ------------------------------------------------------------------------------------------
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(plain)
def test_plain_values_round_trip_with_their_types(value):
    back = decode_state(encode_state({"v": value}))["v"]
    assert back == value and repr(back) == repr(value)


def test_arrays_tensors_and_odd_floats_round_trip():
    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(5)
    state = {"rng": rng.bit_generator.state, "a": np.arange(6, dtype=np.int16).reshape(2, 3),
             "scalar": np.float32(2.5), "i": np.int64(-4), "t": torch.randn(2, 2), "gen": gen.get_state(),
             "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.999)}]},
             "inf": -math.inf, "set": {1, 2}, "__nasengine__": "a key like the tag"}
    back = decode_state(encode_state(state))
    assert back["a"].dtype == np.int16 and np.array_equal(back["a"], state["a"])
    assert type(back["scalar"]) is np.float32 and back["scalar"] == 2.5 and type(back["i"]) is np.int64
    assert torch.equal(back["t"], state["t"]) and torch.equal(back["gen"], state["gen"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["optimizer"]["state"][0]["step"], torch.tensor(3.0))
    assert back["inf"] == -math.inf and back["set"] == {1, 2} and back["__nasengine__"] == "a key like the tag"
    restored = np.random.default_rng()
    restored.bit_generator.state = back["rng"]
    assert restored.integers(1 << 30) == rng.integers(1 << 30)


def test_a_state_without_tensors_is_pure_json_and_npz():
    blob = encode_state({"rng": np.random.default_rng(0).bit_generator.state, "pop": [("g", 1.0)]})
    assert b"torch" not in blob and b"\x80\x04" not in blob  # no pickle anywhere


def test_what_is_not_data_is_named():
    with pytest.raises(StateCodecError, match=r"state\['pop'\]\[1\]: a .*_Touch is not data"):
        encode_state({"pop": [1, _Touch("x")]})
    with pytest.raises(StateCodecError, match="array of Python objects"):
        encode_state({"a": np.array([object()])})


def test_a_corrupt_state_is_one_store_error_naming_the_file_and_generation(tmp_path):
    store = _run_folder(tmp_path)
    good = encode_state({"x": 1})
    _plant(store, 0, good[:-3] + b"}}}")
    with pytest.raises(StoreError, match=r"run\.sqlite: controller state of generation 0: corrupt"):
        store.load_controller_state()
    _plant(store, 0, good[:30])
    with pytest.raises(StoreError, match="generation 0: corrupt controller state"):
        store.load_controller_state()
    store.close()


# ---- old pickled runs --------------------------------------------------------------------------------------
def test_a_pickled_state_is_refused_unless_trusted(tmp_path, caplog):
    target = tmp_path / "PWNED"
    store = _run_folder(tmp_path)
    _plant(store, 0, pickle.dumps({"x": _Touch(target)}, protocol=4))
    with pytest.raises(UntrustedStateError, match="--trust-run"):
        store.load_controller_state()
    assert not target.exists()
    store.close()
    legit = tmp_path / "old"
    store = _run_folder(tmp_path, "old")
    _plant(store, 3, pickle.dumps({"n_told": 4, "pop": [("g", 1.0)]}, protocol=4))
    store.close()
    with ExperimentStore.open(legit, trust_pickles=True) as store, caplog.at_level(logging.WARNING):
        assert store.load_controller_state() == (3, {"n_told": 4, "pop": [("g", 1.0)]})
    assert "reading a pickled controller state of generation 3 (--trust-run)" in caplog.text


def test_resume_of_a_crafted_run_folder_refuses_in_one_line_and_runs_nothing(tmp_path, capsys):
    target = tmp_path / "PWNED"
    store = _run_folder(tmp_path)
    _plant(store, 0, pickle.dumps({"x": _Touch(target)}, protocol=4))
    store.close()
    assert main(["resume", str(tmp_path / "run")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("nasengine resume: error: ") and "--trust-run" in err and "run.sqlite" in err
    assert not target.exists()


# ---- symlinks ------------------------------------------------------------------------------------------------
def test_the_lock_is_not_taken_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).symlink_to(victim)
    with pytest.raises(StoreError, match=r"\.lock is a symbolic link"):
        RunLock(run).acquire()
    assert victim.read_text() == "precious"


def test_plots_replace_a_planted_symlink_and_never_write_its_target(tmp_path):
    from nasengine.report import RunReport

    _run_folder(tmp_path).close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    report = tmp_path / "run" / "report"
    report.mkdir()
    (report / "psnr_vs_params.png").symlink_to(victim)
    paths = RunReport.load(tmp_path / "run").plots(report)
    assert victim.read_text() == "precious"
    planted = report / "psnr_vs_params.png"
    assert planted in paths and not planted.is_symlink() and planted.read_bytes().startswith(b"\x89PNG")
    assert not list(report.glob(".*.tmp"))


# ---- outputs that exist ---------------------------------------------------------------------------------------
def _image(path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(path)
    return path


def test_upscale_refuses_to_overwrite_without_force(tmp_path, capsys):
    img = _image(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert main(["upscale", str(img), "-o", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"nasengine upscale: error: {out} exists; pass --force to overwrite it"
    assert out.read_bytes() == b"keep me"
    assert main(["upscale", str(img), "-o", str(out), "--force"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_upscale_writes_with_the_mode_the_umask_gives(tmp_path, mask):
    import os
    import stat

    img = _image(tmp_path / "in.png")
    old = os.umask(mask)
    try:
        assert main(["upscale", str(img)]) == 0  # the default output name, beside the input
    finally:
        os.umask(old)
    out = tmp_path / "in_x2_bicubic.png"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def _genome(tmp_path):
    return tiny_genome_file(tmp_path)


def test_train_and_export_refuse_to_overwrite_without_force(tmp_path, capsys):
    genome = _genome(tmp_path)
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.pt").write_bytes(b"keep me")
    assert main(["train", str(genome), "--out", str(out), "--steps", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"nasengine train: error: {out / 'model.pt'} exists; pass --force to overwrite it"
    assert (out / "model.pt").read_bytes() == b"keep me" and not (out / "checkpoints").exists()

    target = tmp_path / "one.pt"
    target.write_bytes(b"keep me")
    assert main(["export", str(genome), "-o", str(target)]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"nasengine export: error: {target} exists; pass --force to overwrite it"
    assert target.read_bytes() == b"keep me"
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "tiny.json").write_text("keep me")
    assert main(["export", str(genome), "-o", str(folder)]) == EXIT_USAGE
    assert f"{folder / 'tiny.json'} exists" in capsys.readouterr().err
    assert not (folder / "tiny.pt").exists()
    assert main(["export", str(genome), "-o", str(target), "--force"]) == 0
    assert torch.jit.load(str(target)) is not None
