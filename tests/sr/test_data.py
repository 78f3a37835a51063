"""nasengine.sr.data: name resolution, embedded data, deterministic patches, validation crops."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import nasengine
from nasengine.errors import DataError, InputError
from nasengine.sr import data as D
from nasengine.sr.color import rgb_to_y
from nasengine.sr.image import save_image
from nasengine.sr.resize import imresize, modcrop

SHARED = Path(nasengine.__file__).resolve().parents[2] / "shared" / "data"


def write_images(folder: Path, sizes, *, seed=0, ext="png") -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i:02d}.{ext}"
        save_image(p, rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        out.append(p)
    return out


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No NASENGINE_DATA, and a current directory without data folders."""
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# ---- embedded data -----------------------------------------------------------------------------
def test_embedded_sets_are_shipped():
    emb = D.embedded_datasets()
    assert set(emb) == {"default", "Set5"}
    default = sorted(emb["default"].glob("*.png"))
    assert 25 <= len(default) <= 35
    size = sum(p.stat().st_size for p in default)
    assert 2_500_000 <= size <= 3_500_000, size
    assert [p.stem for p in sorted(emb["Set5"].glob("*.png"))] == ["baby", "bird", "butterfly", "head", "woman"]
    assert (D.EMBEDDED_DIR / "README.txt").is_file()


@pytest.mark.skipif(not (SHARED / "benchmarks" / "Set5" / "HR").is_dir(), reason="no shared/data checkout")
def test_embedded_files_are_byte_copies():
    emb = D.embedded_datasets()
    for p in emb["Set5"].glob("*.png"):
        assert p.read_bytes() == (SHARED / "benchmarks" / "Set5" / "HR" / p.name).read_bytes()
    for p in emb["default"].glob("*.png"):
        assert p.read_bytes() == (SHARED / "train" / "T91" / p.name).read_bytes()
    # the documented choice: names sorted as strings, every third starting with the third
    t91 = sorted(p.name for p in (SHARED / "train" / "T91").glob("*.png"))
    assert sorted(p.name for p in emb["default"].glob("*.png")) == t91[2::3]


def test_embedded_images_are_rgb_and_large_enough():
    for p in D.embedded_datasets()["default"].glob("*.png"):
        with Image.open(p) as im:
            assert im.mode == "RGB" and min(im.size) >= 96


# ---- name resolution ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "DEFAULT", "Default"])
def test_embedded_training_name_case_insensitive(isolated, name):
    resolved, files = D.resolve_training(name)
    assert resolved == "default" and len(files) == len(list(D.embedded_datasets()["default"].glob("*.png")))
    assert files == sorted(files)


def test_embedded_benchmark(isolated):
    name, files = D.resolve_benchmark("set5")
    assert name == "Set5" and [f.stem for f in files] == ["baby", "bird", "butterfly", "head", "woman"]
    name, folder = D.resolve_dataset("SET5", kind="benchmark")
    assert name == "Set5" and folder.is_dir()


def test_resolve_by_path(isolated):
    files = write_images(isolated / "mine", [(20, 20), (21, 22)])
    for arg in (isolated / "mine", str(isolated / "mine")):
        name, got = D.resolve_benchmark(arg)
        assert name == "mine" and got == files
    # a folder holding only HR/ means HR/
    hr = write_images(isolated / "Bench" / "HR", [(20, 20)])
    assert D.resolve_benchmark(isolated / "Bench") == ("Bench", hr)
    assert D.resolve_dataset(isolated / "Bench" / "HR") == ("Bench", isolated / "Bench" / "HR")
    # one image file
    assert D.resolve_training(files[0]) == ("img00", [files[0]])
    with pytest.raises(DataError, match="not a folder"):
        D.resolve_dataset(files[0])


def test_relative_path_wins_over_embedded_name(isolated):
    files = write_images(Path("Set5"), [(20, 20)])  # ./Set5 in the current directory
    name, got = D.resolve_benchmark("Set5")
    assert name == "Set5" and [p.resolve() for p in got] == [p.resolve() for p in files]


def test_empty_folder_names_the_folder(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError) as exc:
        D.resolve_training(empty)
    assert str(empty) in str(exc.value)
    with pytest.raises(DataError) as exc:
        D.PatchDataset(empty, 2, 16)
    assert str(empty) in str(exc.value)


def test_non_image_file_path(isolated):
    p = isolated / "notes.txt"
    p.write_text("x")
    with pytest.raises(DataError, match="not an image file") as exc:
        D.resolve_benchmark(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize(
    "layout",
    [("ZzSet", "HR"), ("ZzSet",), ("benchmarks", "ZzSet", "HR"), ("benchmarks", "ZzSet"), ("train", "ZzSet")],
)
def test_env_root_layouts(isolated, monkeypatch, layout):
    root = isolated / "root"
    files = write_images(root.joinpath(*layout), [(20, 20)])
    monkeypatch.setenv(D.ENV_VAR, str(root))
    name, got = D.resolve_benchmark("ZzSet")
    assert name == "ZzSet" and got == files
    assert D.resolve_benchmark("zzset")[1] == files  # case-insensitive on disk too


def test_env_roots_in_order_and_missing_roots_reported(isolated, monkeypatch):
    a, b = isolated / "a", isolated / "b"
    fa = write_images(a / "ZzSet", [(20, 20)])
    fb = write_images(b / "ZzSet", [(20, 20)], seed=1)
    write_images(b / "OnlyB", [(20, 20)])
    missing = isolated / "missing-root"
    monkeypatch.setenv(D.ENV_VAR, os.pathsep.join([str(missing), str(a), str(b)]))
    assert D.resolve_training("ZzSet")[1] == fa
    assert D.resolve_training("OnlyB")[0] == "OnlyB"
    monkeypatch.setenv(D.ENV_VAR, os.pathsep.join([str(b), str(a)]))
    assert D.resolve_training("ZzSet")[1] == fb
    monkeypatch.setenv(D.ENV_VAR, os.pathsep.join([str(missing), str(a)]))
    with pytest.raises(DataError) as exc:
        D.resolve_benchmark("NoSuchSet")
    msg = str(exc.value)
    assert "NoSuchSet" in msg and "default" in msg and "Set5" in msg
    assert str(a) in msg and f"{missing} (missing)" in msg and D.ENV_VAR in msg


def test_kind_orders_train_and_benchmarks(isolated, monkeypatch):
    root = isolated / "root"
    bench = write_images(root / "benchmarks" / "Both" / "HR", [(20, 20)])
    train = write_images(root / "train" / "Both", [(20, 20)], seed=3)
    monkeypatch.setenv(D.ENV_VAR, str(root))
    assert D.resolve_benchmark("Both")[1] == bench
    assert D.resolve_training("Both")[1] == train
    with pytest.raises(InputError, match="kind"):
        D.resolve_dataset("Both", kind="weird")


def test_empty_candidate_folders_are_skipped(isolated, monkeypatch):
    root = isolated / "root"
    (root / "Skip").mkdir(parents=True)  # empty: not a match
    files = write_images(root / "train" / "Skip", [(20, 20)])
    monkeypatch.setenv(D.ENV_VAR, str(root))
    assert D.resolve_training("Skip")[1] == files


def test_checkout_shared_data_is_searched(isolated):
    if not (SHARED / "benchmarks" / "Set14" / "HR").is_dir():
        pytest.skip("no shared/data next to the checkout")
    assert D.data_roots()[-1] == SHARED
    name, files = D.resolve_benchmark("set14")
    assert name == "Set14" and len(files) == 14


def test_available_datasets(isolated, monkeypatch):
    root = isolated / "root"
    write_images(root / "benchmarks" / "Bx" / "HR", [(20, 20)])
    write_images(root / "train" / "Tx", [(20, 20), (20, 20)])
    write_images(root / "Set5", [(20, 20)])  # shadowed by the embedded Set5
    monkeypatch.setenv(D.ENV_VAR, str(root))
    infos = D.available_datasets()
    by_name = {i.name: i for i in infos}
    assert infos[0].source == "embedded" and by_name["Set5"].source == "embedded"
    assert by_name["Bx"].images == 1 and by_name["Tx"].images == 2
    assert by_name["Tx"].folder == root / "train" / "Tx" and by_name["Tx"].source == str(root)
    assert len({i.name.lower() for i in infos}) == len(infos)
    for info in infos:  # everything listed resolves to what is listed
        assert D.resolve_dataset(info.name)[1] == info.folder


# ---- PatchDataset arguments --------------------------------------------------------------------
@pytest.fixture
def small_set(tmp_path):
    return write_images(tmp_path / "imgs", [(40, 50), (33, 64), (48, 48)])


@pytest.mark.parametrize("scale", [0, -1, -3, 2.5, "2", None])
def test_bad_scale_names_the_value(small_set, scale):
    with pytest.raises(InputError) as exc:
        D.PatchDataset(small_set, scale, 16)
    assert "scale" in str(exc.value) and repr(scale) in str(exc.value)


@pytest.mark.parametrize("scale", [0, -2])
def test_check_scale_and_validation_set_scale(scale):
    with pytest.raises(InputError, match=f"got {scale}"):
        D.check_scale(scale)
    with pytest.raises(InputError, match=f"got {scale}"):
        D.validation_set("Set5", scale)


def test_integral_float_scale_accepted(small_set):
    assert D.PatchDataset(small_set, 2.0, 16).scale == 2


@pytest.mark.parametrize("patch", [15, 0, -4, 17.5])
def test_bad_patch_size_names_the_value(small_set, patch):
    with pytest.raises(InputError) as exc:
        D.PatchDataset(small_set, 2, patch)
    assert "patch_size" in str(exc.value) and repr(patch) in str(exc.value)


@pytest.mark.parametrize("kw,field", [
    ({"channels": "ycbcr"}, "channels"),
    ({"lr_kernel": "opencv"}, "lr_kernel"),
    ({"seed": -1}, "seed"),
    ({"length": 0}, "length"),
])
def test_bad_options_name_the_field(small_set, kw, field):
    with pytest.raises(InputError, match=field):
        D.PatchDataset(small_set, 2, 16, **kw)


def test_empty_list_of_images():
    with pytest.raises(DataError, match="empty"):
        D.PatchDataset([], 2, 16)


@pytest.mark.parametrize("cache", [True, False])
def test_image_smaller_than_patch_is_skipped(tmp_path, cache):
    files = write_images(tmp_path / "m", [(40, 40), (20, 60), (64, 31), (32, 32)])
    with pytest.warns(D.DataWarning) as rec:
        ds = D.PatchDataset(files, 2, 32, cache=cache)
    msg = str(rec[0].message)
    assert str(files[1]) in msg and "60x20" in msg and str(files[2]) in msg and "31x64" in msg
    assert str(files[0]) not in msg
    assert ds.paths == [files[0], files[3]]
    for k in range(20):
        lr, hr = ds.sample(k)
        assert hr.shape == (1, 32, 32)


@pytest.mark.parametrize("cache", [True, False])
def test_all_images_too_small(tmp_path, cache):
    files = write_images(tmp_path / "s", [(20, 30), (30, 20)])
    with pytest.raises(DataError) as exc:
        D.PatchDataset(files, 4, 32, cache=cache)
    msg = str(exc.value)
    assert "32x32" in msg and "30x20" in msg and "20x30" in msg
    assert all(str(f) in msg for f in files)


def test_corrupt_image_names_the_file(tmp_path):
    files = write_images(tmp_path / "c", [(40, 40)])
    bad = tmp_path / "c" / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(InputError) as exc:
        D.PatchDataset(files + [bad], 2, 16)
    assert str(bad) in str(exc.value)


# ---- sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("channels,c", [("y", 1), ("rgb", 3), ("RGB", 3)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_and_range(small_set, channels, c, scale):
    p = {2: 24, 3: 30, 4: 32}[scale]
    ds = D.PatchDataset(small_set, scale, p, channels=channels, length=7)
    assert len(ds) == 7
    for k in range(5):
        lr, hr = ds[k]
        assert lr.dtype == hr.dtype == torch.float32
        assert lr.shape == (c, p // scale, p // scale) and hr.shape == (c, p, p)
        assert 0 <= float(lr.min()) and float(hr.max()) <= 1
        if c == 1:  # studio-swing Y
            assert float(hr.min()) >= 16 / 255 - 1e-7 and float(hr.max()) <= 235 / 255 + 1e-7


def test_default_length(small_set):
    assert len(D.PatchDataset(small_set, 2, 16)) == D.DEFAULT_LENGTH


@functools.lru_cache(maxsize=None)
def hyp_datasets(tmp: str):
    files = write_images(Path(tmp), [(40, 50), (33, 64), (48, 48), (36, 37)], seed=5)
    make = lambda **kw: D.PatchDataset(files, 2, 16, seed=11, length=100, **kw)  # noqa: E731
    return make(augment=True), make(augment=False), make(augment=True, cache=False), files


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return hyp_datasets(str(tmp_path_factory.mktemp("hyp")))


def test_sampling_is_deterministic(datasets):
    aug, plain, lazy, files = datasets
    again = D.PatchDataset(files, 2, 16, seed=11, length=100)
    other_seed = D.PatchDataset(files, 2, 16, seed=12, length=100)
    diffs = 0
    for k in [0, 1, 2, 99, 100, 12345, 10**9]:
        a, b, c = aug.sample(k), again.sample(k), lazy.sample(k)
        for x, y, z in zip(a, b, c):
            assert torch.equal(x, y) and torch.equal(x, z)
        diffs += not torch.equal(a[1], other_seed.sample(k)[1])
    assert diffs >= 5
    assert not torch.equal(aug.sample(0)[1], aug.sample(1)[1])


def test_getitem_follows_epoch(datasets):
    aug = datasets[0]
    try:
        assert torch.equal(aug[3][1], aug.sample(3)[1])
        aug.set_epoch(4)
        assert torch.equal(aug[3][1], aug.sample(4 * 100 + 3)[1])
        assert torch.equal(aug[-1][1], aug.sample(4 * 100 + 99)[1])
        with pytest.raises(IndexError):
            aug[100]
    finally:
        aug.set_epoch(0)


def _dihedral(a, hf, vf, rot):
    b = np.flip(a, 1) if hf else a
    b = np.flip(b, 0) if vf else b
    return np.rot90(b, 1, axes=(0, 1)) if rot else b


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3]))),
    st.booleans(), st.booleans(), st.booleans(),
)
def test_augment_is_a_symmetry_of_the_square(a, hf, vf, rot):
    out = D.augment(a, hf, vf, rot)
    np.testing.assert_array_equal(out, _dihedral(a, hf, vf, rot))
    assert out.flags.c_contiguous
    assert sorted(out.ravel().tolist()) == sorted(a.ravel().tolist())  # a permutation of pixels
    # rotations are transposes up to flips: the inverse exists in the same family
    inverses = [D.augment(out, h2, v2, r2) for h2 in (0, 1) for v2 in (0, 1) for r2 in (0, 1)]
    assert any(x.shape == a.shape and np.array_equal(x, a) for x in inverses)


def test_the_eight_augmentations_are_distinct():
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    outs = {D.augment(a, h, v, r).tobytes() for h in (0, 1) for v in (0, 1) for r in (0, 1)}
    assert len(outs) == 8


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**40))
def test_augmented_sample_is_exact_symmetry_of_plain_sample(datasets, k):
    aug, plain, _, _ = datasets
    info, info0 = aug.sample_info(k), plain.sample_info(k)
    assert (info.image, info.top, info.left) == (info0.image, info0.top, info0.left)
    assert not (info0.hflip or info0.vflip or info0.rot90)
    lr, hr = aug.sample_arrays(k)
    lr0, hr0 = plain.sample_arrays(k)
    np.testing.assert_array_equal(hr, _dihedral(hr0, info.hflip, info.vflip, info.rot90))
    np.testing.assert_array_equal(lr, _dihedral(lr0, info.hflip, info.vflip, info.rot90))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**40))
def test_sample_is_crop_then_pillow_lr_then_y(datasets, k):
    aug, _, _, files = datasets
    info = aug.sample_info(k)
    img = np.asarray(Image.open(files[info.image]).convert("RGB"))
    assert 0 <= info.top <= img.shape[0] - 16 and 0 <= info.left <= img.shape[1] - 16
    crop = img[info.top : info.top + 16, info.left : info.left + 16]
    lr_rgb = np.asarray(Image.fromarray(crop).resize((8, 8), Image.Resampling.BICUBIC))
    lr, hr = aug.sample(k)
    flags = (info.hflip, info.vflip, info.rot90)
    want_hr = _dihedral(rgb_to_y(crop), *flags)
    want_lr = _dihedral(rgb_to_y(lr_rgb), *flags)
    assert torch.equal(hr[0], torch.from_numpy(want_hr.astype(np.float32) / 255))
    assert torch.equal(lr[0], torch.from_numpy(want_lr.astype(np.float32) / 255))


def test_every_image_position_and_augmentation_is_drawn(datasets):
    aug = datasets[0]
    infos = [aug.sample_info(k) for k in range(400)]
    assert {i.image for i in infos} == set(range(len(aug.paths)))
    assert len({(i.hflip, i.vflip, i.rot90) for i in infos}) == 8
    assert len({(i.image, i.top, i.left) for i in infos}) > 300


def test_matlab_kernel(small_set):
    ds = D.PatchDataset(small_set, 3, 24, channels="rgb", lr_kernel="matlab", augment=False, seed=2)
    info = ds.sample_info(5)
    lr, hr = ds.sample_arrays(5)
    img = np.asarray(Image.open(info.path).convert("RGB"))
    crop = img[info.top : info.top + 24, info.left : info.left + 24]
    np.testing.assert_array_equal(hr, crop)
    np.testing.assert_array_equal(lr, imresize(crop, output_shape=(8, 8)))
    assert lr.shape == (8, 8, 3) and lr.dtype == np.uint8


def test_grey_training_image_is_replicated(tmp_path):
    p = tmp_path / "g.png"
    save_image(p, np.random.default_rng(0).integers(0, 256, size=(30, 30), dtype=np.uint8))
    ds = D.PatchDataset([p], 2, 16, channels="rgb")
    lr, hr = ds.sample(0)
    assert torch.equal(hr[0], hr[1]) and torch.equal(hr[1], hr[2])


def test_embedded_default_by_name(isolated):
    ds = D.PatchDataset("default", 2, 48)
    assert ds.name == "default" and len(ds.paths) == len(list(D.embedded_datasets()["default"].glob("*.png")))
    assert ds.sample(0)[0].shape == (1, 24, 24)


# ---- loader ------------------------------------------------------------------------------------
def test_make_loader_batches_are_global_samples(datasets):
    aug = datasets[0]
    loader = D.make_loader(aug, 3, start_step=5, steps=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    for n, (lr, hr) in enumerate(batches):
        t = 5 + n
        assert lr.shape == (3, 1, 8, 8) and hr.shape == (3, 1, 16, 16)
        for j in range(3):
            assert torch.equal(hr[j], aug.sample(t * 3 + j)[1])


def test_make_loader_unbounded_and_workers(datasets):
    aug = datasets[0]
    it = iter(D.make_loader(aug, 2))
    first = [next(it) for _ in range(3)]
    with_workers = list(D.make_loader(aug, 2, steps=3, num_workers=1))
    for (a, b), (c, d) in zip(first, with_workers):
        assert torch.equal(a, c) and torch.equal(b, d)
    with pytest.raises(TypeError):
        len(D.make_loader(aug, 2))
    with pytest.raises(InputError, match="batch_size"):
        D.make_loader(aug, 0)


def test_make_loader_leaves_the_global_rng_alone(datasets):
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    next(iter(D.make_loader(datasets[0], 2)))
    assert torch.equal(torch.rand(3), want)


def test_make_loader_plain_dataset_wraps_around():
    plain = torch.utils.data.TensorDataset(torch.arange(5.0))
    got = [b[0].tolist() for b in D.make_loader(plain, 2, steps=3)]
    assert got == [[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]


# ---- validation --------------------------------------------------------------------------------
class Bicubic(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="bicubic") + self.dummy


def test_validation_set_crops_align_with_full_lr(isolated):
    val = D.validation_set("Set5", 2, "y", size=48, count=3)
    assert len(val) == 3 and val.name == "Set5" and val.scale == 2
    files = D.resolve_benchmark("Set5")[1][:3]
    for path, lr, hr_y in zip(files, val.lr, val.hr_y):
        assert lr.shape == (1, 24, 24) and hr_y.shape == (48, 48) and hr_y.dtype == np.uint8
        hr = modcrop(np.asarray(Image.open(path).convert("RGB")), 2)
        full_lr = imresize(hr, output_shape=(hr.shape[0] // 2, hr.shape[1] // 2))
        h, w = hr.shape[:2]
        top, left = (h - 48) // 2 // 2 * 2, (w - 48) // 2 // 2 * 2
        np.testing.assert_array_equal(hr_y, rgb_to_y(hr[top : top + 48, left : left + 48]))
        want = rgb_to_y(full_lr[top // 2 : top // 2 + 24, left // 2 : left // 2 + 24])
        assert torch.equal(lr[0], torch.from_numpy(want.astype(np.float32) / 255))


def test_validation_psnr_bicubic_model(isolated):
    val = D.validation_set("Set5", 2, "y", size=64)
    model = Bicubic(2)
    model.train()
    m = D.validation_psnr(model, val)
    assert model.training  # mode restored
    assert set(m) == {"psnr", "ssim"} and 25 < m["psnr"] < 45 and 0 < m["ssim"] <= 1
    assert val(model) == m
    val_rgb = D.validation_set("Set5", 2, "rgb", size=64)
    assert val_rgb.lr[0].shape == (3, 32, 32)
    m_rgb = D.validation_psnr(Bicubic(2), val_rgb)
    assert abs(m_rgb["psnr"] - m["psnr"]) < 1.0


def test_validation_psnr_perfect_and_broken_models(isolated):
    val = D.validation_set("Set5", 2, "y", size=32, count=1)
    target = torch.from_numpy(val.hr_y[0].astype(np.float32) / 255)[None, None]

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return target + 0.4 / 255  # still rounds to the HR

    assert D.validation_psnr(Oracle(), val)["psnr"] == float("inf")

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(InputError, match="expected"):
        D.validation_psnr(Wrong(), val)

    class Nan(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(target, float("nan"))

    assert np.isnan(D.validation_psnr(Nan(), val)["psnr"])


def test_validation_set_size_errors(isolated):
    with pytest.raises(InputError, match="size"):
        D.validation_set("Set5", 3, size=32)
    with pytest.raises(InputError, match="size"):
        D.validation_set("Set5", 2, size=12)


def test_validation_whole_images(isolated):
    val = D.validation_set("Set5", 4, size=None, count=2)
    files = D.resolve_benchmark("Set5")[1][:2]
    for p, lr, hr_y in zip(files, val.lr, val.hr_y):
        with Image.open(p) as im:
            w, h = im.size
        assert hr_y.shape == (h // 4 * 4, w // 4 * 4) and lr.shape == (1, h // 4, w // 4)


def test_whole_image_validation_equals_benchmark_evaluation(isolated):
    from nasengine.sr.evaluate import evaluate
    from nasengine.sr.models import TorchUpscaler

    for channels in ("y", "rgb"):
        model = Bicubic(2)
        mine = D.validation_psnr(model, D.validation_set("Set5", 2, channels, size=None))
        score = evaluate(TorchUpscaler(model, 2, channels=channels), "Set5", scale=2).set_score("Set5")
        assert mine == {"psnr": score.psnr, "ssim": score.ssim}
