#!/usr/bin/env python3
"""Time nasengine's MATLAB-exact ``imresize`` against Pillow's ``Image.resize(..., BICUBIC)`` on B100.

    python benchmarks/resize.py [--data DIR] [--repeats N] [--scales 2 3 4] [--limit N]

For each scale s it times, over the whole set (uint8 RGB arrays already in memory):

* down: HR (modcropped) -> LR, ``imresize(hr, 1/s)`` vs ``Image.fromarray(hr).resize(lr_size, BICUBIC)``;
* up: LR -> HR size, ``imresize(lr, s)`` vs ``Image.fromarray(lr).resize(hr_size, BICUBIC)``.

Both sides go numpy array in -> numpy array out (Pillow's time includes ``Image.fromarray`` and
``np.asarray``; the "PIL core" column leaves them out). The contenders run back to back on each
image, ``--repeats`` times, and each image counts with its best time per contender (robust to load
from other processes on the machine); the figures are the sums over the set divided by the number
of images. The ratio is ours / Pillow measured in this same run. Both run on one thread (imresize
keeps its torch operations below ATen's parallel grain size).

``--data`` is the B100 HR folder or a folder holding ``B100/HR`` (default: ``$NASENGINE_DATA`` or
the checkout's ``../shared/data/benchmarks``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nasengine.sr.resize import imresize, modcrop

REPO = Path(__file__).resolve().parents[1]


def find_b100(arg: str | None) -> Path:
    cands = []
    if arg:
        cands.append(Path(arg))
    for root in os.environ.get("NASENGINE_DATA", "").split(os.pathsep):
        if root:
            cands.append(Path(root))
    cands.append(REPO.parent / "shared" / "data" / "benchmarks")
    for c in cands:
        for sub in ("", "HR", "B100/HR", "benchmarks/B100/HR"):
            d = c / sub if sub else c
            if d.is_dir() and any(d.glob("*.png")):
                return d
    sys.exit(f"B100 HR images not found (tried {', '.join(map(str, cands))}); pass --data DIR")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="B100 HR folder, or a folder holding B100/HR")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = ap.parse_args(argv)

    folder = find_b100(args.data)
    files = sorted(folder.glob("*.png"))
    if args.limit:
        files = files[: args.limit]
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    print(f"{len(images)} images from {folder}; best of {args.repeats}; "
          f"times per image in ms (numpy uint8 in -> numpy uint8 out)")
    header = (f"{'scale':>5} {'dir':>4} {'ours':>7} {'PIL':>7} {'PIL core':>8} {'ours/PIL':>8} "
              f"{'ours/core':>9}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for s in args.scales:
        hrs = [np.ascontiguousarray(modcrop(im, s)) for im in images]
        lrs = [imresize(hr, 1 / s) for hr in hrs]  # also warms the weight caches
        for hr in hrs[:3]:
            imresize(hr, 1 / s)
        for lr in lrs[:3]:
            imresize(lr, s)
        for direction, srcs, factor in (("down", hrs, 1 / s), ("up", lrs, s)):
            sizes = [(int(np.ceil(a.shape[1] * factor)), int(np.ceil(a.shape[0] * factor))) for a in srcs]
            pil_imgs = [Image.fromarray(a) for a in srcs]

            t_ours = t_pil = t_core = 0.0
            for src, im, size in zip(srcs, pil_imgs, sizes):
                # per image: the contenders back to back, each timed as its best of `repeats` runs
                bo = bp = bc = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    imresize(src, factor)
                    t1 = time.perf_counter()
                    np.asarray(Image.fromarray(src).resize(size, Image.Resampling.BICUBIC))
                    t2 = time.perf_counter()
                    im.resize(size, Image.Resampling.BICUBIC)
                    t3 = time.perf_counter()
                    bo, bp, bc = min(bo, t1 - t0), min(bp, t2 - t1), min(bc, t3 - t2)
                t_ours, t_pil, t_core = t_ours + bo, t_pil + bp, t_core + bc
            n = len(srcs)
            ratio = t_ours / t_pil
            worst = max(worst, ratio)
            print(f"{'x%d' % s:>5} {direction:>4} {t_ours / n * 1e3:7.2f} {t_pil / n * 1e3:7.2f} "
                  f"{t_core / n * 1e3:8.2f} {ratio:8.2f} {t_ours / t_core:9.2f}")
    print(f"worst ours/PIL ratio: {worst:.2f} (goal: <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
