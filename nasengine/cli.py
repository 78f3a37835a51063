"""The ``nasengine`` command.

Exit codes (documented in ``nasengine --help``):

* 0 — success;
* 1 — the work ran but failed (an internal error, or a run whose every candidate failed);
* 2 — bad arguments or bad input (unknown name, unreadable image, wrong scale, ...): one line says why;
* 130 — interrupted with Ctrl-C (whatever was already stored stays stored).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasengine import __version__
from nasengine.errors import NasengineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """exit codes: 0 success; 1 the work failed; 2 bad arguments or input (one line says why);
130 interrupted (Ctrl-C).

Datasets are given by name (embedded: default, Set5; more under $NASENGINE_DATA) or by folder path."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and the documented exit code for bad arguments."""

    def error(self, message: str):  # pragma: no cover - exercised through main()
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _scale(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale must be a whole number >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"scale must be a whole number >= 2, got {value}")
    return value


# ----------------------------------------------------------------------------------------------------------
# model resolution


def resolve_upscaler(spec: str, scale: int, *, weights: str | None = None, device: str = "cpu"):
    """Turn a ``--model`` value into an :class:`nasengine.sr.models.Upscaler`.

    A registered model name (``bicubic``, or one a plugin brings) or a trained checkpoint
    (``nasengine train`` output, ``.pt``).
    """
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    name = spec.strip()
    if name in plugins.models:
        return plugins.models.get(name)(scale=scale, weights=weights, device=device)
    if name.lower() in plugins.models:
        return plugins.models.get(name.lower())(scale=scale, weights=weights, device=device)
    path = Path(name)
    if path.is_file() and path.suffix in (".pt", ".pth", ".ckpt"):
        from nasengine.checkpoints import load_trained_model

        return load_trained_model(path, scale=scale, device=device)
    known = ", ".join(plugins.models.names())
    raise NasengineError(f"unknown model {spec!r}: give a trained checkpoint (.pt) or one of: {known}")


def _lr_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            h = w = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 480x480, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def _fmt_int(n: float) -> str:
    return f"{int(n):,}"


def _fmt_g(n: float) -> str:
    return f"{n / 1e9:.4f}G"


# ----------------------------------------------------------------------------------------------------------
# commands


def cmd_evaluate(args) -> int:
    from nasengine.sr.evaluate import evaluate

    reports = []
    for scale in args.scale:
        upscaler = resolve_upscaler(args.model, scale, weights=args.weights, device=args.device)
        report = evaluate(
            upscaler,
            args.data,
            scale=scale,
            pipeline=args.pipeline,
            self_ensemble=args.self_ensemble,
            progress=not args.quiet and not args.json,
        )
        reports.append(report)
        if not args.json:
            print(report.table(per_image=args.per_image))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    return EXIT_OK


def cmd_upscale(args) -> int:
    from nasengine.sr.image import load_rgb, save_image
    from nasengine.sr.models import upscale_image

    upscaler = resolve_upscaler(args.model, args.scale, weights=args.weights, device=args.device)
    image = load_rgb(args.image)
    out = upscale_image(upscaler, image)
    output = Path(args.output) if args.output else Path(args.image).with_name(
        f"{Path(args.image).stem}_x{args.scale}_{upscaler.name}.png"
    )
    save_image(output, out)
    print(f"{args.image} ({image.shape[1]}x{image.shape[0]}) -> {output} ({out.shape[1]}x{out.shape[0]})")
    return EXIT_OK


def cmd_plugins(args) -> int:
    from nasengine.plugins import ROLES, get_plugins

    plugins = get_plugins()
    rows = plugins.plugins()
    if args.json:
        print(json.dumps([p.as_dict() for p in rows], indent=2))
        return EXIT_OK
    for p in rows:
        status = f"FAILED: {p.error}" if p.error else ""
        print(f"{p.name} {p.version}  ({p.module}) {status}".rstrip())
        for attr, _role in ROLES.values():
            names = p.registered.get(attr)
            if names:
                print(f"    {attr:<14} {', '.join(names)}")
    return EXIT_OK if not any(p.error for p in rows) else EXIT_FAILED


def cmd_methods(args) -> int:
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    out = []
    for entry in plugins.methods.entries():
        m = entry.obj
        out.append({"name": m.name, "plugin": entry.plugin, "loop": m.loop, "space": m.space,
                    "controller": m.controller, "evaluator": m.evaluator, "presets": sorted(m.presets),
                    "default_preset": m.default_preset, "description": m.description})
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    for m in out:
        presets = ", ".join(p + ("*" if p == m["default_preset"] else "") for p in m["presets"])
        print(f"{m['name']:<12} {m['description']}")
        print(f"{'':<12} loop={m['loop']} space={m['space']} controller={m['controller']} "
              f"evaluator={m['evaluator']} presets: {presets}  (from {m['plugin']})")
    return EXIT_OK


def cmd_cost(args) -> int:
    from nasengine.cost import analytic_cost
    from nasengine.genomefile import load_architecture

    arch = load_architecture(args.genome)
    cost = analytic_cost(arch.graph, lr_size=args.lr_size)
    h, w = args.lr_size
    data = {"architecture": arch.name, "lr_size": [h, w], "scale": int(cost.scale),
            "mult_adds": int(cost.mult_adds), "params": int(cost.params),
            "params_without_bias": int(cost.params_without_bias), "kernel_params": int(cost.kernel_params),
            "key": arch.graph.key(), "convention": cost.convention}
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{arch.name}: {_fmt_g(cost.mult_adds)} Mult-Adds, {_fmt_int(cost.params)} params "
          f"({_fmt_int(cost.params_without_bias)} without biases) at LR {w}x{h} (x{data['scale']})")
    if args.per_node:
        from nasengine.cost import cost_breakdown

        for node in cost_breakdown(arch.graph, lr_size=args.lr_size):
            print(f"    {node}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nasengine",
        description="Neural architecture search for single-image super-resolution.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nasengine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("evaluate", help="score a model on benchmark sets (PSNR/SSIM on Y)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bicubic", help="bicubic (default)")
    p.add_argument("--weights", help="weights file for the model")
    p.add_argument("--data", action="append", help="benchmark set name or folder (repeatable; default Set5)")
    p.add_argument("--scale", action="append", type=_scale, help="upscaling factor (repeatable; default 2)")
    p.add_argument("--pipeline", choices=("rgb", "y"), default="rgb",
                   help="rgb: LR from uint8 RGB, Y scored (default); y: the papers' older 'Y first' pipeline")
    p.add_argument("--self-ensemble", action="store_true", help="x8 geometric self-ensemble")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    p.add_argument("--device", default="cpu", help="torch device for network models (cpu, cuda, auto)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("upscale", help="upscale an image with a model", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="input image (any format Pillow reads)")
    p.add_argument("--model", default="bicubic", help="bicubic (default)")
    p.add_argument("--weights", help="weights file for the model")
    p.add_argument("--scale", type=_scale, default=2, help="upscaling factor (default 2)")
    p.add_argument("-o", "--output", help="output PNG (default: IMAGE_x{scale}_{model}.png beside the input)")
    p.add_argument("--device", default="cpu", help="torch device for network models")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("plugins", help="list plugins, their versions and what each registers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("methods", help="list search methods and their presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("cost", help="params and Mult-Adds of an architecture (genome/graph file or name)")
    p.add_argument("genome", help="genome or graph JSON file, or a registered architecture name")
    p.add_argument("--lr-size", type=_lr_size, default=(480, 480), help="LR input WIDTHxHEIGHT (default 480x480)")
    p.add_argument("--per-node", action="store_true", help="also list the cost of every node")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cost)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "data", "absent") is None:
        args.data = ["Set5"]
    if getattr(args, "scale", "absent") is None:
        args.scale = [2]
    try:
        return args.func(args)
    except NasengineError as exc:
        print(f"nasengine {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nasengine {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
