"""The ``nasengine`` command.

Exit codes (documented in ``nasengine --help``):

* 0 — success;
* 1 — the work ran but failed (an internal error, or a run whose every candidate failed);
* 2 — bad arguments or bad input (unknown name, unreadable image, wrong scale, ...): one line says why;
* 130 — interrupted with Ctrl-C (whatever was already stored stays stored);
* 141 — the reader of the output went away (``nasengine show RUN | head``): nothing more is printed;
* 143 — a search stopped by SIGTERM (``kill PID``): like Ctrl-C, the run is marked ``interrupted``.

Every error is one line on stderr (``nasengine COMMAND: error: ...``), never a traceback: besides
:class:`~nasengine.errors.NasengineError` (exit 2), an OS error (read-only folder, full disk) names its file
(exit 2), and running out of memory says so (exit 1).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasengine import __version__
from nasengine.errors import NasengineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell tool killed by a closed pipe exits with

EPILOG = """exit codes: 0 success; 1 the work failed; 2 bad arguments or input (one line says why);
130 interrupted (Ctrl-C); 141 the output's reader went away; 143 a search stopped by SIGTERM (the run is
marked interrupted, as with Ctrl-C).

Datasets are given by name (embedded: default, Set5; more under $NASENGINE_DATA) or by folder path."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and the documented exit code for bad arguments."""

    def error(self, message: str):  # pragma: no cover - exercised through main()
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _whole_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_at_least(1)
_non_negative = _whole_at_least(0)


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


def resolve_upscaler(spec: str, scale: int, *, weights: str | None = None, device: str = "auto"):
    """Turn a ``--model`` value into an :class:`nasengine.sr.models.Upscaler`.

    A registered model name (``bicubic``, or one a plugin brings), a trained checkpoint
    (``nasengine train`` output, ``.pt``) or its TorchScript (``nasengine export`` output), or a folder: a
    ``nasengine train --out`` folder (its ``model.pt``) or a one-shot run (its derived architecture's retrained
    model, see :func:`nasengine.export.model_in_folder`).
    """
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    name = spec.strip()
    if name in plugins.models:
        return plugins.models.get(name)(scale=scale, weights=weights, device=device)
    if name.lower() in plugins.models:
        return plugins.models.get(name.lower())(scale=scale, weights=weights, device=device)
    path = Path(name)
    if path.is_dir():
        from nasengine.export import model_in_folder

        path = model_in_folder(path)
    if path.is_file() and path.suffix in (".pt", ".pth", ".ckpt", ".ts"):
        if weights is not None:
            raise NasengineError(f"--weights {weights}: {spec} is a trained model file that holds its own weights; "
                                 "--weights goes with a registered model name")
        from nasengine.export import is_torchscript, load_torchscript_model

        if is_torchscript(path):
            return load_torchscript_model(path, scale=scale, device=device)
        from nasengine.checkpoints import load_trained_model

        return load_trained_model(path, scale=scale, device=device)
    if path.is_file() or name in plugins.architectures:
        raise NasengineError(f"{spec} is an architecture without weights: train it first "
                             f"(nasengine train {spec} --out DIR) and pass DIR/model.pt")
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


def _tile(text: str):
    """``auto``, 0 (no tiling) or a tile side in LR pixels."""
    if text == "auto":
        return text
    try:
        return _non_negative(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected auto, 0 (no tiling) or a tile side in LR pixels: {exc}") from None


def _add_tile_options(p) -> None:
    from nasengine.receptive import AUTO_TILE_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE

    p.add_argument("--tile", type=_tile, default="auto", metavar="N",
                   help=f"upscale in N x N LR tiles (plus the overlap); 0: never; auto (default): {DEFAULT_TILE} for "
                        f"LR images over {AUTO_TILE_PIXELS / 1e6:.1f} megapixels")
    p.add_argument("--tile-overlap", type=_non_negative, metavar="N",
                   help="LR pixels of overlap on each side of a tile (default: the network's receptive radius, "
                        f"which makes tiles exact, when the model file has its architecture; else {DEFAULT_OVERLAP})")


def _fmt_int(n: float) -> str:
    return f"{int(n):,}"


def _fmt_g(n: float) -> str:
    return f"{n / 1e9:.4f}G"


# ----------------------------------------------------------------------------------------------------------
# commands


def cmd_evaluate(args) -> int:
    from nasengine.device import device_name
    from nasengine.sr.evaluate import evaluate
    from nasengine.sr.models import with_tiling

    args.device = device_name(args.device)  # "auto" -> cuda or cpu; a bad name is one line, exit 2
    reports = []
    for scale in args.scale:
        upscaler = resolve_upscaler(args.model, scale, weights=args.weights, device=args.device)
        upscaler = with_tiling(upscaler, args.tile, args.tile_overlap, progress=not args.quiet and not args.json)
        report = evaluate(
            upscaler,
            args.data,
            scale=scale,
            pipeline=args.pipeline,
            lr_border=args.lr_border,
            self_ensemble=args.self_ensemble,
            progress=not args.quiet and not args.json,
        )
        reports.append(report)
        if not args.json:
            print(report.table(per_image=args.per_image))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    return EXIT_OK


def cmd_score(args) -> int:
    from nasengine.sr.score import score_folder

    report = score_folder(args.sr, args.hr, scale=args.score_scale)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table(per_image=args.per_image))
    return EXIT_OK


def cmd_upscale(args) -> int:
    from nasengine.sr.image import load_rgb, save_image
    from nasengine.device import device_name
    from nasengine.sr.models import upscale_image, with_tiling

    args.device = device_name(args.device)  # "auto" -> cuda or cpu; a bad name is one line, exit 2
    upscaler = resolve_upscaler(args.model, args.scale, weights=args.weights, device=args.device)
    upscaler = with_tiling(upscaler, args.tile, args.tile_overlap)
    image = load_rgb(args.image)
    out = upscale_image(upscaler, image)
    import re

    # a model's name may be a path (a checkpoint trained from a genome file): keep a file-name-safe stem
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(upscaler.name).stem).strip("-.") or "model"
    output = Path(args.output) if args.output else Path(args.image).with_name(
        f"{Path(args.image).stem}_x{args.scale}_{model}.png"
    )
    from nasengine.fileio import refuse_overwrite

    refuse_overwrite(output, force=args.force)
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


_COST_CONVENTION = ("Mult-Adds = sum over learned convs of H_out*W_out*k_h*k_w*(C_in/groups)*C_out, a transposed "
                    "conv k*k*C_in*C_out per input pixel; bias adds, activations, element-wise ops, batch norm, "
                    "pixel shuffle and interpolation are free (nasengine.ops; the 'true' convention of "
                    "nasengine.cost.CONVENTIONS, which also names the other conventions `nasengine cost` prints)")


def _op_info(entry) -> dict:
    import inspect

    from nasengine.ops import REQUIRED

    spec = entry.obj
    arity = spec.arity if isinstance(spec.arity, int) else \
        f"{spec.arity[0]}+" if spec.arity[1] is None else f"{spec.arity[0]}-{spec.arity[1]}"
    cost_doc = inspect.getdoc(spec.cost)
    return {"name": spec.name, "plugin": entry.plugin, "arity": arity, "commutative": spec.commutative,
            "doc": spec.doc,
            "attrs": [{"name": n, "type": a.type.__name__, "required": a.default is REQUIRED,
                       "default": None if a.default is REQUIRED else a.default, "doc": a.doc}
                      for n, a in spec.attrs.items()],
            "cost": cost_doc if cost_doc and cost_doc != inspect.getdoc(type(spec.cost)) else None}


def cmd_ops(args) -> int:
    from nasengine.plugins import get_plugins

    ops = get_plugins().ops
    entries = [e for e in ops.entries() if not args.names or e.name in args.names]
    missing = [n for n in args.names if n not in ops]
    if missing:
        raise NasengineError(f"unknown op {missing[0]!r}; registered: {', '.join(ops.names())}")
    info = [_op_info(e) for e in entries]
    if args.json:
        print(json.dumps({"cost_convention": _COST_CONVENTION, "ops": info}, indent=2, default=repr))
        return EXIT_OK
    print(f"cost convention: {_COST_CONVENTION}")
    for op in info:
        inputs = f"{op['arity']} input{'' if op['arity'] == 1 else 's'}"
        print(f"\n{op['name']}  ({inputs}{', commutative' if op['commutative'] else ''}; plugin {op['plugin']})")
        if op["doc"]:
            print(f"    {op['doc']}")
        if op["cost"]:
            print(f"    cost: {op['cost']}")
        for a in op["attrs"]:
            default = "required" if a["required"] else f"default {json.dumps(a['default'])}"
            print(f"    {a['name']}: {a['type']}, {default}" + (f" -- {a['doc']}" if a["doc"] else ""))
    return EXIT_OK


def cmd_new_plugin(args) -> int:
    from nasengine.scaffold import new_plugin, plugin_names

    names = plugin_names(args.name)
    target = new_plugin(args.name, args.dir)
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        print(f"wrote {path}")
    print(f"plugin {names['dist']} (module {names['module']}): controller {names['name']}-elite-mutation, "
          f"method {names['name']}")
    print(f"next: pip install -e {target} && nasengine plugins && pytest {target / 'tests'}")
    return EXIT_OK


def cmd_methods(args) -> int:
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    if args.options:
        return _print_method_options(plugins, args)
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


def _print_method_options(plugins, args) -> int:
    from nasengine.options import method_options

    method = plugins.methods.get(args.options)
    roles = method_options(plugins, method, args.preset)
    preset = args.preset or method.default_preset
    if args.json:
        print(json.dumps({"method": method.name, "preset": preset, "roles": roles}, indent=2, default=repr))
        return EXIT_OK
    print(f"options of method {method.name!r}, preset {preset!r} (--set ROLE.OPTION=VALUE; * = set by the preset)")
    for role in roles:
        print(f"\n[{role['role']}] {role['name']}")
        if not role["options"]:
            print("  (no options)")
        for opt in role["options"]:
            default = "required" if opt["required"] else f"default {json.dumps(opt['default'], default=repr)}"
            value = f" * preset {json.dumps(opt['preset'], default=repr)}" if opt["set"] else ""
            kind = f" ({opt['type']})" if opt["type"] else ""
            print(f"  {role['role']}.{opt['name']}: {default}{value}{kind}")
            if opt["help"]:
                print(f"      {opt['help']}")
    return EXIT_OK


def _number(x):
    """An int, or a float for a non-whole Fraction (JSON)."""
    return int(x) if getattr(x, "denominator", 1) == 1 else float(x)


def cmd_cost(args) -> int:
    from nasengine.cost import CONVENTIONS, analytic_cost, cost_convention
    from nasengine.genomefile import load_architecture

    main = cost_convention(args.convention)
    arch = load_architecture(args.genome)
    cost = analytic_cost(arch.graph, lr_size=args.lr_size, convention=main,
                         also=[c for c in CONVENTIONS.values() if c is not main])
    h, w = args.lr_size
    data = {"architecture": arch.name, "lr_size": [h, w], "scale": int(cost.scale),
            "mult_adds": _number(cost.mult_adds), "params": int(cost.params),
            "params_without_bias": int(cost.params_without_bias), "kernel_params": int(cost.kernel_params),
            "key": arch.graph.key(), "convention": cost.convention,
            "conventions": {name: {"mult_adds": _number(v), "description": cost_convention(name).description}
                            for name, v in cost.figures.items()}}
    if cost.live_params is not None:  # the graph keeps built-but-unused nodes (op `unused`)
        data["live_params"], data["live_mult_adds"] = int(cost.live_params), _number(cost.live_mult_adds)
    nodes = []
    if args.per_node:
        from nasengine.cost import cost_breakdown

        nodes = [{"node": n.node, "name": arch.graph.name(n.node), "op": n.op, "params": n.params,
                  "bias_params": n.bias_params, "activation_params": n.activation_params, "mult_adds": n.mult_adds,
                  "out_size": list(n.out_size), "runs": n.runs}
                 for n in cost_breakdown(arch.graph, lr_size=args.lr_size, convention=main)]
        data["nodes"] = nodes
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{arch.name}: {_fmt_g(cost.mult_adds)} Mult-Adds, {_fmt_int(cost.params)} params "
          f"({_fmt_int(cost.params_without_bias)} without biases) at LR {w}x{h} (x{data['scale']}); "
          f"Mult-Adds convention: {cost.convention}")
    if cost.live_params is not None:
        print(f"  live (without unused nodes): {_fmt_g(cost.live_mult_adds)} Mult-Adds, "
              f"{_fmt_int(cost.live_params)} params")
    if nodes:  # per node: before the convention's multiplier, with its rules, LR size and run counts
        print(_node_table(nodes, sum(n["mult_adds"] for n in nodes)))
    width = max(len(name) for name in cost.figures)
    print("Mult-Adds by convention:")
    for name, v in cost.figures.items():
        print(f"  {name:<{width}}  {_fmt_g(v):>12}  {cost_convention(name).description}")
    return EXIT_OK


def _node_table(nodes, total_mult_adds: int) -> str:
    """``cost --per-node``: one row per node (id, name, op, output size, params, biases, Mult-Adds, share)."""
    head = ("node", "name", "op", "out (WxH)", "params", "biases", "Mult-Adds", "share")
    rows = [(str(n["node"]), n["name"] or "-", n["op"] + (f" (runs x{n['runs']})" if n.get("runs", 1) != 1 else ""),
             f"{n['out_size'][1]}x{n['out_size'][0]}",
             _fmt_int(n["params"]), _fmt_int(n["bias_params"]), _fmt_int(n["mult_adds"]),
             f"{100.0 * n['mult_adds'] / total_mult_adds:.1f}%" if total_mult_adds else "-") for n in nodes]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    align = [">", "<", "<", ">", ">", ">", ">", ">"]

    def line(r):
        return "  ".join(f"{v:{a}{wd}}" for v, a, wd in zip(r, align, widths)).rstrip()

    return "\n".join([line(head), "-" * len(line(head))] + [line(r) for r in rows])


def _overrides(items) -> dict:
    from nasengine.method import deep_merge, parse_override

    out: dict = {}
    for text in items or []:
        out = deep_merge(out, parse_override(text))
    return out


def _print_report(run_dir, *, top: int | None = None, plots: bool = True) -> None:
    from nasengine.report import RunReport

    rep = RunReport.load(run_dir)
    print(rep.summary())
    if rep.front:
        print(rep.table(limit=top))
    if rep.trajectory():
        print("\narchitecture over training (hard masks):\n" + rep.trajectory_table())
    if plots:
        paths = rep.plots(Path(run_dir) / "report")
        print("plots: " + ", ".join(str(p) for p in paths))


def _search_logging(quiet: bool) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def _with_plugin_options(args) -> tuple[dict, str | None]:
    """``--set`` overrides merged with those of the plugin-added options given, and the executor to use."""
    from nasengine.method import deep_merge
    from nasengine.options import search_option_overrides

    options = getattr(args, "search_options", None) or {}
    values = {name: getattr(args, _option_dest(name)) for name in options}
    extra, executor = search_option_overrides(options, values, args.executor)
    return deep_merge(_overrides(args.set), extra), executor


def cmd_search(args) -> int:
    import time

    from nasengine.plan import format_plan, search_plan
    from nasengine.plugins import get_plugins
    from nasengine.search import apply_executor_args, run_search

    plugins = get_plugins()
    method = plugins.methods.get(args.method)
    overrides, executor = _with_plugin_options(args)
    cfg = apply_executor_args(method.config(args.preset, overrides), executor, args.workers, overrides)
    plan = search_plan(method, cfg, plugins=plugins, measure=args.plan)
    print(format_plan(plan), flush=True)
    if args.plan:
        return EXIT_OK
    out = Path(args.out) if args.out else Path("runs") / f"{method.name}-{cfg['preset']}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"run folder: {out}", flush=True)
    _search_logging(args.quiet)
    outcome = run_search(out, method=method.name, preset=args.preset, overrides=overrides, seed=args.seed,
                         executor=executor, workers=args.workers, progress=not args.quiet)
    print(f"search {outcome.status} ({outcome.stop_reason}) in {outcome.seconds:.1f} s")
    _print_report(out, top=args.top)
    return EXIT_OK if outcome.counts.get("ok", 0) or not outcome.counts else EXIT_FAILED


def cmd_resume(args) -> int:
    from nasengine.search import resume_search

    overrides, executor = _with_plugin_options(args)
    _search_logging(args.quiet)
    outcome = resume_search(args.run, executor=executor, workers=args.workers, progress=not args.quiet,
                            overrides=overrides or None, trust_run=args.trust_run,
                            retry_failed=args.retry_failed)
    print(f"search {outcome.status} ({outcome.stop_reason}) in {outcome.seconds:.1f} s")
    _print_report(args.run, top=args.top)
    return EXIT_OK if outcome.counts.get("ok", 0) else EXIT_FAILED


def cmd_show(args) -> int:
    from nasengine.report import RunReport

    if args.export_store:
        from nasengine.store import ExperimentStore

        with ExperimentStore.open(args.run) as store:
            path = store.export(args.export_store)
        print(f"copied the store of {args.run} to {path}")
        return EXIT_OK
    rep = RunReport.load(args.run)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2, default=str))
        return EXIT_OK
    print(rep.summary())
    if rep.front:
        print("\nPareto front:")
        print(rep.table(limit=args.top))
    if rep.trajectory():
        print("\narchitecture over training (hard masks):")
        print(rep.trajectory_table())
    if args.all:
        print("\nall candidates:")
        print(rep.table(rep.records))
        if rep.attempts:
            print("\nearlier attempts (evaluated again by `resume --retry-failed`):")
            for r in rep.attempts:
                print(f"gen {r.generation} idx {r.idx} attempt {r.attempt}: {r.status}" + (f": {r.error}" if r.error else ""))
    failed = [r for r in rep.records if r.status == "failed"]
    for r in failed[:5]:
        print(f"failed: gen {r.generation} idx {r.idx}: {r.error}")
    if args.plots:
        for path in rep.plots(Path(args.run) / "report"):
            print(f"plot: {path}")
    return EXIT_OK


def _architectures_to_export(spec: str):
    """The :class:`nasengine.export.Exportable` items of a trained model (or a folder with one), a genome, or a
    run (its derived architecture, retrained models and Pareto front)."""
    from nasengine.export import exportable_file, model_in_folder, run_exportables
    from nasengine.store import ExperimentStore

    path = Path(spec)
    if path.is_dir() and ExperimentStore.exists(path):
        return run_exportables(path)
    if path.is_dir():
        return exportable_file(str(model_in_folder(path)))
    return exportable_file(spec)


def cmd_export(args) -> int:
    from nasengine.export import export_all

    items = _architectures_to_export(args.source)
    for done in export_all(items, Path(args.output) if args.output else Path("exports"), format=args.format,
                           lr_size=args.lr_size, overwrite=args.force):
        print(f"{done.name}: {'trained' if done.trained else 'untrained (architecture only)'} -> {done.path}"
              + (f" (genome: {done.genome})" if done.genome else ""))
    return EXIT_OK


def cmd_train(args) -> int:
    import attrs

    from nasengine.sr.trainer import TrainConfig
    from nasengine.train import CHECKPOINT_FOLDER, MODEL_FILE, TrainRecipe, resolve_architecture, train_architecture

    arch = resolve_architecture(args.genome)
    if not args.resume:
        from nasengine.fileio import refuse_overwrite

        for name in (MODEL_FILE, f"{CHECKPOINT_FOLDER}/last.pt"):
            refuse_overwrite(Path(args.out) / name, force=args.force)
    budget = [b for b in ("steps", "epochs", "seconds") if getattr(args, b) is not None]
    config = TrainConfig(lr=args.lr, batch_size=args.batch_size, steps=args.steps if budget else 1000,
                         epochs=args.epochs, seconds=args.seconds, schedule=args.schedule, step_size=args.step_size,
                         val_every=args.val_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
                         device=args.device)
    if args.grad_clip is not None:
        config = attrs.evolve(config, grad_clip=args.grad_clip)
    recipe = TrainRecipe(config=config, train_data=args.data, patch_size=args.patch_size, val_data=args.val_data,
                         init_std=args.init_std)
    done = train_architecture(arch, args.out, recipe, resume=args.resume, progress=not args.quiet)
    final, result = done.metrics, done.result
    print(f"{arch.name}: {result.step} steps in {result.seconds:.1f} s; {args.val_data} x{done.scale} "
          f"PSNR {final.get('psnr', float('nan')):.4f} / SSIM {final.get('ssim', float('nan')):.5f}")
    print(f"model: {done.path}  (use: nasengine evaluate --model {done.path} --data Set5)")
    print(f"checkpoints: {Path(args.out) / CHECKPOINT_FOLDER}  (nasengine train ... --resume continues them)")
    return EXIT_OK


def _option_dest(name: str) -> str:
    return "plugin_option_" + name.replace("-", "_")


def _add_plugin_options(p: argparse.ArgumentParser, entries) -> None:
    """The options plugins registered through ``nasengine_register_search_options``."""
    if not entries:
        return
    group = p.add_argument_group("options added by plugins")
    for entry in entries:
        opt = entry.obj
        help_text = f"{opt.help} [sets {opt.key}" + (f"; implies --executor {opt.executor}" if opt.executor else "") \
            + f"; plugin {entry.plugin}]"
        group.add_argument(f"--{entry.name}", dest=_option_dest(entry.name), type=opt.type, metavar=opt.metavar,
                           help=help_text)
    p.set_defaults(search_options={entry.name: entry.obj for entry in entries})


def _search_option_entries(argv: list[str]):
    """Plugin options, loaded only for ``search`` and ``resume`` (other commands stay free of plugin imports)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in ("search", "resume"):
        return []
    from nasengine.plugins import get_plugins

    return list(get_plugins().search_options.entries())


MODEL_HELP = ("bicubic (default), a registered model, a trained model file (.pt from `nasengine train` or "
              "`nasengine export`), a `nasengine train --out` folder, or a one-shot run folder (its derived "
              "architecture's retrained model)")


def build_parser(search_options=()) -> argparse.ArgumentParser:
    """The argument parser; ``search_options`` are registry entries of plugin-added search/resume options."""
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
    p.add_argument("--model", default="bicubic", help=MODEL_HELP)
    p.add_argument("--weights", help="weights file for the model")
    p.add_argument("--data", action="append", help="benchmark set name or folder (repeatable; default Set5)")
    p.add_argument("--scale", action="append", type=_scale, help="upscaling factor (repeatable; default 2)")
    p.add_argument("--pipeline", choices=("rgb", "y"), default="rgb",
                   help="rgb: LR from uint8 RGB, Y scored (default); y: the papers' older 'Y first' pipeline")
    p.add_argument("--lr-border", choices=("symmetric", "replicate"), default="symmetric",
                   help="symmetric: MATLAB imresize, the protocol (default); replicate: the LR of SelfExSR's "
                        "Set5/Set14/B100 copies, on which FALSR's published figures were measured")
    p.add_argument("--self-ensemble", action="store_true", help="x8 geometric self-ensemble")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    p.add_argument("--device", default="auto", help="torch device for network models: auto (default: cuda if "
                   "available, else cpu), cpu, cuda, cuda:N, mps")
    _add_tile_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="score a folder of SR images made elsewhere against HR images (PSNR/SSIM on Y)",
                       epilog="SR files pair with HR files by stem, else by the stem cut before its first _SR, _HR, "
                              "_LR, _SRF or _x<N> part\n(baby_SR.png, baby_x2_bicubic.png -> baby.png; "
                              "img_001_SRF_2_SR.png -> img_001_SRF_2_HR.png).\n\n" + EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sr", required=True, help="folder of SR images")
    p.add_argument("--hr", required=True, help="HR benchmark set name (e.g. Set5) or folder")
    p.add_argument("--scale", dest="score_scale", type=_scale, required=True, help="upscaling factor of the SR images")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("upscale", help="upscale an image with a model", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="input image (any format Pillow reads)")
    p.add_argument("--model", default="bicubic", help=MODEL_HELP)
    p.add_argument("--weights", help="weights file for the model")
    p.add_argument("--scale", type=_scale, default=2, help="upscaling factor (default 2)")
    p.add_argument("-o", "--output", help="output PNG (default: IMAGE_x{scale}_{model}.png beside the input)")
    p.add_argument("--device", default="auto", help="torch device for network models: auto (default: cuda if "
                   "available, else cpu), cpu, cuda, cuda:N, mps")
    _add_tile_options(p)
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("plugins", help="list plugins, their versions and what each registers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("ops", help="graph operations: description, attributes and cost rule of each")
    p.add_argument("names", nargs="*", help="only these ops (default: all registered)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("new-plugin", help="write a working plugin package (controller, method, tests) to start from")
    p.add_argument("name", help="plugin name, lower-case letters and digits joined by '-' (e.g. my-nas)")
    p.add_argument("--dir", default=".", help="folder to create the package in (default: the current one)")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("methods", help="list search methods and their presets")
    p.add_argument("--options", metavar="METHOD",
                   help="list every option of each role the method uses, with its default, help and preset value")
    p.add_argument("--preset", help="with --options: the preset (default: the method's default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("cost", help="params and Mult-Adds of an architecture (genome/graph file or name)")
    p.add_argument("genome", help="genome or graph JSON file, or a registered architecture name")
    p.add_argument("--lr-size", type=_lr_size, default=(480, 480), help="LR input WIDTHxHEIGHT (default 480x480)")
    p.add_argument("--per-node", action="store_true", help="also list the cost of every node")
    p.add_argument("--convention", default="true",
                   help="counting convention of the main Mult-Adds figure and --per-node (default true; every "
                        "registered convention's total is printed too)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("search", help="run a search method (prints its plan first)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", help="a registered method (see `nasengine methods`)")
    p.add_argument("--preset", help="preset of the method (default: the method's default, usually smoke)")
    p.add_argument("--out", help="run folder (default runs/METHOD-PRESET-TIME)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--executor", help="inline, process, or one a plugin adds (e.g. ray)")
    p.add_argument("--workers", type=_positive_int, help="parallel evaluations")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set budget.generations=5 --set controller.name=random")
    p.add_argument("--plan", action="store_true", help="print the plan with its estimated cost, then stop")
    p.add_argument("--top", type=_positive_int, help="rows of the front table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-generation log")
    _add_plugin_options(p, search_options)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="continue a stopped or killed search exactly where it stopped")
    p.add_argument("run", help="run folder")
    p.add_argument("--executor")
    p.add_argument("--workers", type=_positive_int)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="extend the budget or change the executor, e.g. --set budget.generations=10")
    p.add_argument("--retry-failed", action="store_true",
                   help="first evaluate the failed candidates again (their earlier attempts are kept; "
                        "`show --all` lists them)")
    p.add_argument("--top", type=_positive_int)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--trust-run", action="store_true",
                   help="read a controller state an older nasengine stored as a pickle (reading a pickle can run "
                        "any code: only for run folders you trust)")
    _add_plugin_options(p, search_options)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("show", help="Pareto front, hypervolume, table and plots of a run")
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="everything as JSON")
    p.add_argument("--all", action="store_true", help="also list every candidate")
    p.add_argument("--plots", action="store_true", help="write the plots to RUN/report/")
    p.add_argument("--export-store", metavar="FILE",
                   help="only copy the run's store to FILE: one consistent SQLite file, even while it runs")
    p.add_argument("--top", type=_positive_int)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="export a trained model, a genome, or a run's front (TorchScript/ONNX)")
    p.add_argument("source", help="trained model (.pt from `nasengine train`, or its --out folder), genome/graph "
                   "file or name, or run folder (a one-shot run: the derived architecture first, named derived, "
                   "trained when the run retrained it; then the Pareto front)")
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("-o", "--output", help="output file (one model) or folder (default exports/)")
    p.add_argument("--lr-size", type=_lr_size, default=(32, 32), help="example LR input size for tracing")
    p.add_argument("--force", action="store_true", help="overwrite output files that exist")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train an architecture fully (genome/graph file or registered name)")
    p.add_argument("genome")
    p.add_argument("--out", required=True, help="output folder (model.pt, checkpoints/)")
    p.add_argument("--data", default="default", help="training images: name or folder (default: embedded)")
    p.add_argument("--val-data", default="Set5", help="validation benchmark set")
    p.add_argument("--steps", type=_positive_int)
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--patch-size", type=_positive_int, default=96, help="HR patch side")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--schedule", choices=("constant", "step", "cosine"), default="constant")
    p.add_argument("--step-size", type=_positive_int, help="steps between halvings (schedule step)")
    p.add_argument("--init-std", type=float, help="N(0, std) weight init with zero biases")
    p.add_argument("--grad-clip", type=float, help="clip the global gradient norm to this (a diverging training)")
    p.add_argument("--val-every", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu, cuda, "
                   "cuda:N, mps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--force", action="store_true",
                   help="start afresh even if OUT holds a model.pt or checkpoints (they are overwritten)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_search_option_entries(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "data", "absent") is None:
        args.data = ["Set5"]
    if getattr(args, "scale", "absent") is None:
        args.scale = [2]
    try:
        _check_device(args)
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except NasengineError as exc:
        return _error(args, exc, getattr(exc, "exit_code", EXIT_USAGE))  # failed work (a lost executor): 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None)  # SIGTERM during a search (nasengine.search.session.Terminated)
        if signum is not None:
            print(f"nasengine {args.command}: terminated (signal {signum})", file=sys.stderr)
            return 128 + signum
        print(f"nasengine {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except MemoryError:
        return _error(args, "out of memory", EXIT_FAILED)
    except RecursionError:  # a RuntimeError: before the out-of-memory test below
        return _error(args, "input nested too deeply", EXIT_USAGE)
    except RuntimeError as exc:
        if not _is_out_of_memory(exc):
            raise
        return _error(args, f"out of memory ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                      EXIT_FAILED)
    except OSError as exc:  # read-only folder, full disk, ...: sources name their files; this is the net
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(args, f"{where}{exc.strerror or exc}", EXIT_USAGE)


def _error(args, message, code: int) -> int:
    text = " ".join(str(message).split("\n"))  # one line, whatever the message held
    try:
        print(f"nasengine {args.command}: error: {text}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass
    return code


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's last flush raises nothing."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _is_out_of_memory(exc: RuntimeError) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def _check_device(args) -> None:
    """A ``--device`` torch cannot use is bad input (one line naming ``--device``), before any work: an unknown
    name, or a device this machine lacks (:func:`nasengine.device.resolve_device`, which every command uses)."""
    device = getattr(args, "device", None)
    if not isinstance(device, str) or device in ("auto", "cpu"):
        return
    from nasengine.device import resolve_device
    from nasengine.errors import InputError

    try:
        resolve_device(device)
    except InputError as exc:
        raise InputError(f"--{exc}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
