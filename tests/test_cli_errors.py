"""Issue 11, item 7: every way a command can fail on bad input or a hostile environment ends in one line on
stderr naming what was wrong, exit 2 (1 for failed work: out of memory), and never a traceback."""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasengine.cli import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_USAGE, main
from nasengine.store import CandidateRecord, ExperimentStore
from tests.cli_helpers import tiny_genome_file

REPO = Path(__file__).resolve().parents[1]


def _run_folder(tmp_path, name="run", records=3, method="simple", plugins=None):
    from nasengine.plugins import get_plugins

    cfg = get_plugins().methods.get("simple").config("smoke", {})
    store = ExperimentStore.create(tmp_path / name, method=method, preset="smoke", seed=0, config=cfg,
                                   plugins=plugins or {}, environment={})
    for i in range(records):
        store.record(CandidateRecord(generation=i // 50, idx=i % 50, key=f"k{i}", genome={"depth": 1 + i % 3},
                                     status="ok", params=100.0 + i, mult_adds=1e6 * (i + 1),
                                     metrics={"psnr": 30.0 + (i % 7) / 10}))
    store.close()
    return tmp_path / name


def _genome(tmp_path):
    return tiny_genome_file(tmp_path)


def _image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(path)
    return path


def _model(tmp_path, drop=None):
    from nasengine.builder import build
    from nasengine.checkpoints import save_trained_model
    from nasengine.genomefile import load_architecture

    arch = load_architecture(_genome(tmp_path))
    path = save_trained_model(tmp_path / "model.pt", arch, build(arch.graph))
    if drop:
        data = torch.load(path, weights_only=True)
        del data[drop]
        torch.save(data, path)
    return path


# ---- the cases: (tmp_path, monkeypatch) -> (argv, exit code, what the line must say) ----------------------
def corrupt_page(tmp_path, mp):
    run = _run_folder(tmp_path, records=400)  # several pages of candidates
    data = bytearray((run / "run.sqlite").read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for start in range(3 * page, len(data), page):  # every page after the schema: header and tables stay
        data[start:start + 64] = b"\xa5" * 64
    (run / "run.sqlite").write_bytes(bytes(data))
    return ["show", str(run)], EXIT_USAGE, "run.sqlite: database disk image is malformed"


def read_only_store(tmp_path, mp):
    run = _run_folder(tmp_path)
    import nasengine.store as store_mod

    def read_only(path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        return conn

    mp.setattr(store_mod, "_connect", read_only)
    return (["resume", str(run), "--executor", "inline", "-q"], EXIT_USAGE,
            "run.sqlite: attempt to write a readonly database")


def read_only_run_folder(tmp_path, mp):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_mkdir = Path.mkdir

    def refuse(self, *a, **kw):
        if str(self).startswith(str(parent)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **kw)

    mp.setattr(Path, "mkdir", refuse)
    return (["search", "simple", "--out", str(parent / "run"), "--executor", "inline", "-q"], EXIT_USAGE,
            f"{parent / 'run'}: cannot make the run folder (Permission denied)")


def full_disk_plots(tmp_path, mp):
    run = _run_folder(tmp_path)
    real = os.fdopen

    class Full:
        def __init__(self, fd):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return lambda *a, **kw: None

    import nasengine.fileio as fileio

    mp.setattr(fileio.os, "fdopen", lambda fd, *a, **kw: Full(fd) if a and "b" in a[0] else real(fd, *a, **kw))
    return (["show", str(run), "--plots"], EXIT_USAGE,
            f"{run / 'report' / 'psnr_vs_mult_adds.png'}: cannot write (No space left on device)")


def full_disk_upscale(tmp_path, mp):
    img = _image(tmp_path)
    import nasengine.sr.image as image_mod

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(image_mod.tempfile, "mkstemp", full)
    out = tmp_path / "out.png"
    return ["upscale", str(img), "-o", str(out)], EXIT_USAGE, f"{out}: cannot write (No space left on device)"


def read_only_plots(tmp_path, mp):
    run = _run_folder(tmp_path)
    import nasengine.fileio as fileio

    def refuse(*a, dir=None, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    mp.setattr(fileio.tempfile, "mkstemp", refuse)
    return (["show", str(run), "--plots"], EXIT_USAGE,
            f"{run / 'report' / 'psnr_vs_mult_adds.png'}: cannot write (Permission denied)")


def corrupt_controller_state(tmp_path, mp):
    from nasengine.statecodec import encode_state

    run = _run_folder(tmp_path)
    with ExperimentStore.open(run) as store:
        blob = encode_state({"rng": {"state": 1}})
        store.conn.execute("INSERT INTO controller_state (generation, state, created) VALUES (0, ?, 0)",
                           (blob[:-2] + b"!!",))
    return (["resume", str(run), "--executor", "inline", "-q"], EXIT_USAGE,
            "run.sqlite: controller state of generation 0: corrupt controller state")


def non_utf8_genome(tmp_path, mp):
    path = tmp_path / "g.json"
    path.write_bytes(b'{"name": "\xff\xfe"}')
    return ["cost", str(path)], EXIT_USAGE, f"{path}: not UTF-8 text"


def deeply_nested_genome(tmp_path, mp):
    path = tmp_path / "g.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    return ["cost", str(path)], EXIT_USAGE, f"{path}: JSON nested too deeply"


def model_without_architecture(tmp_path, mp):
    path = _model(tmp_path, drop="architecture")
    return (["evaluate", "--model", str(path)], EXIT_USAGE,
            f"{path}: a trained-model file without its 'architecture'")


def model_without_state_dict(tmp_path, mp):
    path = _model(tmp_path, drop="state_dict")
    return (["upscale", str(_image(tmp_path)), "--model", str(path)], EXIT_USAGE,
            f"{path}: a trained-model file without its 'state_dict'")


def cuda_on_a_cpu_build(tmp_path, mp):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    return (["upscale", str(_image(tmp_path)), "--model", str(_model(tmp_path)), "--device", "cuda"], EXIT_USAGE,
            "--device: CUDA is not available on this machine")


def bogus_device(tmp_path, mp):
    return (["train", str(_genome(tmp_path)), "--out", str(tmp_path / "m"), "--device", "gpu7"], EXIT_USAGE,
            "--device: must be \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\", got 'gpu7'")


def out_of_memory(tmp_path, mp):
    import nasengine.cost as cost

    def boom(*a, **kw):
        raise MemoryError()

    mp.setattr(cost, "analytic_cost", boom)
    return ["cost", str(_genome(tmp_path))], EXIT_FAILED, "out of memory"


def torch_out_of_memory(tmp_path, mp):
    import nasengine.cost as cost

    def boom(*a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")

    mp.setattr(cost, "analytic_cost", boom)
    return ["cost", str(_genome(tmp_path))], EXIT_FAILED, "out of memory (CUDA out of memory. Tried to allocate"


def export_of_a_run_whose_plugin_is_missing(tmp_path, mp):
    run = _run_folder(tmp_path, method="ghost", plugins={"builtin": "0.1.0", "nasengine-ghost": "2.1"})
    return (["export", str(run), "-o", str(tmp_path / "x")], EXIT_USAGE,
            "made with plugin(s) not installed here: nasengine-ghost 2.1")


CASES = [corrupt_page, read_only_store, read_only_run_folder, full_disk_plots, full_disk_upscale, read_only_plots,
         corrupt_controller_state, non_utf8_genome, deeply_nested_genome, model_without_architecture,
         model_without_state_dict, cuda_on_a_cpu_build, bogus_device, out_of_memory, torch_out_of_memory,
         export_of_a_run_whose_plugin_is_missing]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_one_line_and_the_documented_exit_code(case, tmp_path, monkeypatch, capsys):
    argv, code, says = case(tmp_path, monkeypatch)
    capsys.readouterr()
    try:
        got = main(argv)
    except SystemExit as exc:  # pragma: no cover - argparse
        got = exc.code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1] if err else ""
    assert line.startswith(f"nasengine {argv[0]}: error: "), err
    assert says in line, line
    assert got == code, err
    # progress lines (a search's "resuming ...") may precede it, but the error itself is one line
    assert all(not x.startswith(" ") for x in err.splitlines()), err


def test_show_of_a_run_whose_plugin_is_missing_names_it(tmp_path, capsys):
    run = _run_folder(tmp_path, method="ghost", plugins={"builtin": "0.1.0", "nasengine-ghost": "2.1"})
    assert main(["show", str(run)]) == 0
    assert "not installed here: plugin(s) nasengine-ghost 2.1" in capsys.readouterr().out


def test_a_full_disk_under_the_store_is_one_error_naming_it(tmp_path, monkeypatch):
    """SQLite's own "disk full" (SQLITE_FULL: no page may be added to the file) while recording."""
    import nasengine.store as store_mod
    from nasengine.store import StoreError

    run = _run_folder(tmp_path, records=0)
    real = store_mod._connect

    def full(path):
        conn = real(path)
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        return conn

    monkeypatch.setattr(store_mod, "_connect", full)
    with ExperimentStore.open(run) as store:
        with pytest.raises(StoreError, match=r"run\.sqlite: database or disk is full$"):
            store.record(CandidateRecord(generation=0, idx=0, key="k", genome={"g": "x" * 20000}, status="ok"))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in sys.path if p])
    return env


def test_show_into_a_closed_pipe_exits_quietly(tmp_path):
    run = _run_folder(tmp_path, records=200)
    proc = subprocess.Popen([sys.executable, "-m", "nasengine", "show", str(run), "--all"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # `| head` that has read enough, before anything was written
    _, err = proc.communicate(timeout=300)
    assert err.decode() == "" and proc.returncode == EXIT_BROKEN_PIPE


@pytest.fixture
def immutable(tmp_path):
    """A folder even root cannot write (``chattr +i``), or a skip where the file system does not allow it."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    done = []

    def make(path):
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available here")
        done.append(path)

    yield folder, make
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_really_read_only_folders_through_the_command(immutable):
    folder, make = immutable
    run = _run_folder(folder, records=5)
    make(run)
    plots = subprocess.run([sys.executable, "-m", "nasengine", "show", str(run), "--plots"], capture_output=True,
                           text=True, env=_env(), timeout=300)
    assert plots.returncode == EXIT_USAGE and "Traceback" not in plots.stderr
    assert plots.stderr.strip().splitlines()[-1].startswith(f"nasengine show: error: {run / 'report'}")
    make(folder)
    search = subprocess.run([sys.executable, "-m", "nasengine", "search", "simple", "--out", str(folder / "new"),
                             "-q", "--executor", "inline"], capture_output=True, text=True, env=_env(), timeout=300)
    assert search.returncode == EXIT_USAGE and "Traceback" not in search.stderr
    assert search.stderr.strip().splitlines()[-1] == (
        f"nasengine search: error: {folder / 'new'}: cannot make the run folder (Operation not permitted)")
