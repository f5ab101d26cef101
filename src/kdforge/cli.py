"""The `kdforge` command line."""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from kdforge.errors import SittingOver, TrainingStopped, UserError

LIST_KINDS = ("methods", "models", "datasets", "presets")
FINISH_BY_HELP = ("HH:MM (the next time the clock reads it) or an ISO date-time: start only the runs that can "
                  "finish by then, timed by the row's slowest recorded run (a sitting with an end: a scheduler's time "
                  "limit, a lent machine)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdforge", description="Knowledge distillation for PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model or distil one (CONFIG: a YAML file or a preset name)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.05 data.batch_size=64")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from its last checkpoint")

    p = sub.add_parser("sweep", help="a grid of settings x seeds, resumable; the best mean validation top-1 chosen")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides shared by every run")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a setting and its values (repeat for more settings; every combination runs)")
    p.add_argument("--cell", action="append", default=[], metavar='"[NAME:] KEY=V KEY=V"',
                   help="one combination (repeat; instead of --grid): an ablation's cells, each changing a few "
                        "settings; \"\" is the config as given")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--select-on", default="val", help="the split the choice reads: val (the test split never)")
    p.add_argument("--root", help="where the run folders go (default runs/sweeps/<name>)")
    p.add_argument("--out", help="the table and the choice, as OUT.md and OUT.json (default results/sweeps/<name>)")
    p.add_argument("--name", help="the sweep's name (default: the config's)")
    p.add_argument("--only-seeds", help="train only these seeds in this sitting, e.g. 0 or 1,2 (parallel lanes); "
                                        "the choice is written once every seed's runs are done")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="read validation top-1 from each run's final weights on this many images per class (outside "
                        "the training subset) instead of the run's own validation split")
    p.add_argument("--reuse", action="append", default=[], metavar="FOLDER",
                   help="another sweep's run folders, or its ledger of finished runs (results/sweeps/NAME.runs.jsonl): "
                        "a run there with exactly a cell's settings and seed is taken instead of trained (repeatable)")
    p.add_argument("--finish-by", help=FINISH_BY_HELP)

    p = sub.add_parser("detection-data", help="a COCO-format detection benchmark: CIFAR-10 objects on canvases")
    p.add_argument("--out", required=True, help="the folder to write (must not exist)")
    p.add_argument("--canvas", type=int, default=96, help="canvas side in pixels")
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--objects", default="1-4", help="objects per canvas, N or LOW-HIGH")
    p.add_argument("--scale", default="16-48", help="object side in pixels, N or LOW-HIGH")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="where cifar10-jpeg.tar.gz is (else $KDFORGE_DATA, ./data, the cache)")

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's test split")
    p.add_argument("checkpoint", help="a run folder, a kdforge checkpoint, or a state-dict file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", help="architecture name (read from kdforge checkpoints when omitted)")
    p.add_argument("--data-root", help="folder holding the dataset")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--classes", help="restrict the data to these labels (re-indexed), e.g. 4,5,6,7,8,9")
    p.add_argument("--groups", help="also report top-1 per class group, e.g. old=0-4,new=5-9 (incremental learning)")
    p.add_argument("--amp", choices=("recorded", "true", "false"), default="recorded",
                   help="bf16 autocast: as the run evaluated itself (recorded in its checkpoint; float32 when absent), "
                        "or as given")

    p = sub.add_parser("fewshot", help="N-way K-shot nearest-centroid episodes on a model's embedding (95 %% CI)")
    p.add_argument("checkpoint", help="a run folder, a kdforge checkpoint, or a state-dict file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--classes", required=True, help="the novel classes the episodes draw from, e.g. 5,6,7,8,9")
    p.add_argument("--model", help="architecture name (read from kdforge checkpoints when omitted)")
    p.add_argument("--data-root")
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--shot", type=int, nargs="+", default=[1, 5])
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("export", help="the distilled student alone, as safetensors, ONNX, a torch.export program (pt2) "
                                      "or TorchScript, with a JSON card")
    p.add_argument("run", help="run folder (or kdforge checkpoint)")
    p.add_argument("--format", required=True, choices=("safetensors", "onnx", "pt2", "torchscript"))  # export.FORMATS
    p.add_argument("--out", required=True, help="file to write; FILE.json is written beside it")
    p.add_argument("--check", type=int, default=0, help="compare with PyTorch on this many test images")
    p.add_argument("--data-root")

    p = sub.add_parser("list", help="list the registered names, one per line")
    p.add_argument("kind", choices=LIST_KINDS)

    p = sub.add_parser("plot", help="training-loss and accuracy curves of one or more run folders, as a PNG")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--title")

    p = sub.add_parser("bench", help="accuracy suites, smoke grids, published comparisons, the results page")
    bench = p.add_subparsers(dest="bench_command", required=True)
    b = bench.add_parser("accuracy", help="train a suite's teacher once and every (method, seed) student; resumable")
    b.add_argument("suite")
    b.add_argument("--seeds", type=int, default=3)
    b.add_argument("--methods", help="comma-separated rows of the suite (default: every method)")
    b.add_argument("--budget", default="small", help="one of the suite's budgets (small, full; e60... for "
                                                     "cifar10-paper-cpu)")
    b.add_argument("--root", default="runs/bench", help="where run folders go")
    b.add_argument("--results", default="results", help="where SUITE.csv / SUITE.md / PNGs go")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--only-seeds", help="comma-separated seeds this sitting runs (to share a suite between processes)")
    b.add_argument("--finish-by", help=FINISH_BY_HELP)
    b = bench.add_parser("detection", help="the CPU detection suite: a Faster R-CNN teacher, then every detection "
                                           "method's students (resumable)")
    b.add_argument("--seeds", type=int, default=3, help="seeds per row (0: build the canvases and train the teacher "
                                                        "only)")
    b.add_argument("--methods", help="comma-separated rows (default: ce,kd,dkd,ckd,reviewkd,reviewkd+dkd,reviewkd+ckd)")
    b.add_argument("--only-seeds", help="comma-separated seeds this sitting runs (to share the suite between processes)")
    b.add_argument("--root", default="runs/bench")
    b.add_argument("--results", default="results")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--finish-by", help=FINISH_BY_HELP)
    b = bench.add_parser("status", help="where a suite stands: seeds recorded, runs under way, runs left, hours left")
    b.add_argument("suite", nargs="?", help="an accuracy suite, or detection-cpu (the `kdforge bench detection` "
                   "suite); without one, every suite with recorded runs, one line each")
    b.add_argument("--budget", default="small", help="one of the suite's budgets")
    b.add_argument("--seeds", type=int, default=3)
    b.add_argument("--methods", help="comma-separated rows (default: every row)")
    b.add_argument("--root", default="runs/bench")
    b.add_argument("--results", default="results")
    b = bench.add_parser("teacher", help="print the folder of a suite's teacher, training it first if needed")
    b.add_argument("suite")
    b.add_argument("--budget", default="small", help="one of the suite's budgets")
    b.add_argument("--root", default="runs/bench", help="where run folders go")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--no-train", action="store_true", help="fail (exit 2) instead of training a missing teacher")
    b.add_argument("--row", help="the teacher of this row (rows whose teacher sees other classes have their own)")
    b.add_argument("--results", default="results", help="its store of finished teachers is RESULTS/teachers")
    b.add_argument("--store", action="store_true",
                   help="keep the finished teacher in RESULTS/teachers (weights ~1 MB), which a new machine restores "
                        "instead of training another teacher")
    b = bench.add_parser("smoke", help="validate every cell of a GPU suite and run each for two steps on tiny data")
    b.add_argument("suite", choices=("cifar100-grid", "imagenet"))
    b.add_argument("--only", help="comma-separated cells or methods")
    b.add_argument("--results", default="results")
    b.add_argument("--threads", type=int, default=2)
    b = bench.add_parser("compare", help="measured results beside the published numbers for the same cells")
    b.add_argument("suite")
    b.add_argument("--results", default="results")
    b = bench.add_parser("regime", help="choose a suite's student schedule from its ce and kd runs (paper regime)")
    b.add_argument("suite")
    b.add_argument("--results", default="results")
    b.add_argument("--tolerance", type=float, default=0.5, help="points: ce at N vs ce at 2N")
    b.add_argument("--max-minutes", type=float, default=20.0, help="slowest ce / kd run at the chosen schedule")
    b.add_argument("--split", choices=("val", "test"), default="val",
                   help="the split the criteria read (validation: a suite setting is never chosen on test)")
    b.add_argument("--runs", default="runs/bench", help="the suite's run folders")
    b.add_argument("--val-per-class", type=int, default=None,
                   help="read validation top-1 from the runs' final weights on this many images per class (drawn "
                        "outside the training subset) instead of each run's own split")
    b = bench.add_parser("adopt", help="copy a suite's runs (or a sweep's finished runs) into another suite's rows "
                                       "that train exactly the same")
    b.add_argument("source", help="a suite, a folder of finished runs (e.g. runs/sweeps/NAME) or a sweep's ledger "
                                   "(results/sweeps/NAME.runs.jsonl)")
    b.add_argument("target")
    b.add_argument("--root", default="runs/bench", help="where the target suite's run folders go")
    b.add_argument("--budget", default="small", help="the budget of both suites (e240... for the paper regime)")
    b.add_argument("--results", default="results")
    b = bench.add_parser("withdraw", help="take recorded runs out of a suite's table so they train again (kept, with "
                                          "the reason, under withdrawn/)")
    b.add_argument("suite")
    b.add_argument("--budget", default="small", help="one of the suite's budgets")
    b.add_argument("--rows", help="comma-separated rows (default: every row)")
    b.add_argument("--seeds", help="comma-separated seeds (default: every seed)")
    b.add_argument("--older-teacher", action="store_true",
                   help="only runs that distilled from another teacher than the suite's current one")
    b.add_argument("--reason", required=True, help="why (kept beside the withdrawn rows)")
    b.add_argument("--root", default="runs/bench")
    b.add_argument("--results", default="results")
    b = bench.add_parser("reproduce", help="train recorded runs again into their missing run folders and check each "
                                           "ends at its recorded top-1 (the table is not changed)")
    b.add_argument("suite")
    b.add_argument("--budget", default="small", help="one of the suite's budgets")
    b.add_argument("--rows", required=True, help="comma-separated rows")
    b.add_argument("--seeds", required=True, help="comma-separated seeds")
    b.add_argument("--root", default="runs/bench")
    b.add_argument("--results", default="results")
    b = bench.add_parser("before-after", help="rows of suites as recorded in two results folders, side by side")
    b.add_argument("--before", required=True, help="results folder recorded before a change")
    b.add_argument("--after", default="results")
    b.add_argument("--suites", required=True, help="comma-separated suites")
    b.add_argument("--rows", required=True, help="comma-separated methods (a cell's rows match by method)")
    b.add_argument("--out", help="markdown file to write (default: print)")
    b = bench.add_parser("results", help="write docs/RESULTS.md from the results files")
    b.add_argument("--results", default="results")
    b.add_argument("--out", default="docs/RESULTS.md")

    p = sub.add_parser("demo", help="teacher + every method on the digits data, offline, in about a minute")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--threads", type=int, default=None)
    return parser


def cmd_detection_data(args) -> int:
    from kdforge.data.detection_build import build_detection_data

    out = build_detection_data(args.out, {"train": args.train, "val": args.val, "test": args.test}, args.canvas,
                               args.objects, args.scale, args.seed, args.data_root)
    print(f"wrote {out}/{{train,val,test}}.json and images")
    return 0


def cmd_sweep(args) -> int:
    from pathlib import Path

    from kdforge.sweep import parse_cells, parse_grid, run_sweep

    name = args.name or Path(args.config).stem
    try:
        only = [int(s) for s in args.only_seeds.split(",") if s.strip()] if args.only_seeds else None
    except ValueError:
        raise UserError(f"--only-seeds takes seed numbers separated by commas, e.g. 0,2; got {args.only_seeds!r}") \
            from None
    if args.grid and args.cell:
        raise UserError("--grid and --cell do not mix: list the combinations with --cell, or the values with --grid")
    grid = parse_cells(args.cell) if args.cell else parse_grid(args.grid)
    run_sweep(args.config, args.overrides, grid, args.seeds, args.select_on,
              Path(args.root or f"runs/sweeps/{name}"), Path(args.out or f"results/sweeps/{name}"),
              only_seeds=only, val_per_class=args.val_per_class, reuse=[Path(f) for f in args.reuse],
              finish_by=finish_by(args))
    return 0


def cmd_train(args) -> int:
    from kdforge.config import load_config
    from kdforge.engine.pipeline import train

    cfg = load_config(args.config, args.overrides)
    summary = train(cfg, resume=args.resume)
    metric, label = ("ap", "AP") if summary.get("task") == "detection" else ("top1", "top-1")
    print(f"{summary['method']} {summary['student']} on {summary['dataset']}: {label} last {summary[metric + '_last']:.2f}%, "
          f"best ({summary['best_selected_on']}) {summary[metric + '_best']:.2f}%, {summary['wall_seconds']:.0f} s "
          f"-> {cfg.run_dir / 'summary.json'}")
    return 0


def _load_for_eval(args, classes: list[int] | None, meta: dict | None = None):
    """(model, data, arch, device) for evaluating a checkpoint; `meta`: its metadata where the caller has read it."""
    from kdforge.data import DataConfig, load_data
    from kdforge.engine.checkpoint import load_weights
    from kdforge.engine.models import load_model
    from kdforge.engine.run import resolve_device

    device = resolve_device(args.device)
    arch = args.model or (meta if meta is not None else load_weights(args.checkpoint)[1]).get("arch")
    if not arch:
        raise UserError(f"{args.checkpoint} does not name its architecture: pass --model NAME")
    data = load_data(DataConfig(dataset=args.dataset, root=args.data_root, classes=classes,
                                eval_batch_size=getattr(args, "batch_size", 512)), device)
    model = load_model(args.checkpoint, arch, data.num_classes, data.in_channels).to(device)
    return model, data, arch, device


def _labels(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--classes must be comma-separated labels, got {text!r}") from None


def _eval_detection(args) -> dict:
    """COCO box metrics of a detection run's checkpoint on the test split of the COCO-format data at --data-root."""
    from kdforge.data import DataConfig
    from kdforge.detection.data import load_detection_data
    from kdforge.detection.task import DetectionTask
    from kdforge.engine.run import resolve_device
    from kdforge.models.detection import load_detector

    device = resolve_device(args.device)
    model, meta = load_detector(args.checkpoint)
    data = load_detection_data(DataConfig(dataset=args.dataset, root=args.data_root))
    if list(data.classes) != list(meta.get("classes", [])):
        raise UserError(f"{args.checkpoint} was trained on other categories than {args.data_root} lists")
    stream = data.stream("test", args.batch_size, train=False, device=device)
    return {"model": meta["arch"], "dataset": args.dataset, **DetectionTask().evaluate(model.to(device), stream, device)}


def cmd_eval(args) -> int:
    from kdforge.engine.checkpoint import load_weights, recorded_amp
    from kdforge.engine.task import evaluate

    meta = load_weights(args.checkpoint)[1]
    if meta.get("task") == "detection":
        result = _eval_detection(args)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        return 0

    model, data, arch, device = _load_for_eval(args, _labels(args.classes), meta)
    stream = data.stream("test", args.batch_size, train=False, device=device)
    amp = recorded_amp(meta) if args.amp == "recorded" else args.amp == "true"
    result = evaluate(model, stream, device, amp)
    if args.groups:
        from kdforge.protocols import group_accuracy, outputs, parse_groups

        logits, _, labels = outputs(model, stream)
        result.update({f"top1_{k}": v for k, v in group_accuracy(logits, labels, parse_groups(args.groups)).items()})
    print(json.dumps({"model": arch, "dataset": args.dataset, **{k: round(v, 4) for k, v in result.items()}}))
    return 0


def cmd_fewshot(args) -> int:
    from kdforge.protocols import fewshot_episodes, outputs

    args.batch_size = 512
    model, data, arch, device = _load_for_eval(args, _labels(args.classes))
    _, features, labels = outputs(model, data.stream("test", 512, train=False, device=device))
    for shot in args.shot:
        result = fewshot_episodes(features, labels, args.way, shot, args.queries, args.episodes, args.seed)
        print(json.dumps({"model": arch, "dataset": args.dataset, "classes": args.classes,
                          **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}))
    return 0


def cmd_list(args) -> int:
    if args.kind == "methods":
        from kdforge.methods import METHODS as registry
    elif args.kind == "models":
        from kdforge.models import MODELS as registry
    elif args.kind == "datasets":
        from kdforge.data import DATASETS as registry
    else:
        from kdforge.config import list_presets

        print("\n".join(list_presets()))
        return 0
    print("\n".join(registry.names()))
    return 0


def cmd_plot(args) -> int:
    from kdforge.plots import plot_runs

    print(plot_runs(args.runs, args.out, args.title))
    return 0


def cmd_demo(args) -> int:
    from kdforge.demo import run_demo

    run_demo(args.out, threads=args.threads)
    return 0


def finish_by(args):
    from kdforge.bench.deadline import parse_finish_by

    return parse_finish_by(args.finish_by) if args.finish_by else None


def cmd_bench(args) -> int:
    from pathlib import Path

    if args.bench_command == "accuracy":
        from kdforge.bench.accuracy import run_accuracy

        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        methods = [m for m in (args.methods or "").split(",") if m] or None
        only = [int(s) for s in args.only_seeds.split(",")] if args.only_seeds else None
        if only and any(s < 0 or s >= args.seeds for s in only):
            raise UserError(f"--only-seeds must be among 0..{args.seeds - 1}, got {args.only_seeds}")
        print(run_accuracy(args.suite, args.seeds, methods, args.budget, args.root, args.results, args.threads,
                           only_seeds=only, finish_by=finish_by(args)))
    elif args.bench_command == "detection":
        from kdforge.bench.detection import run_detection_suite

        if args.seeds < 0:
            raise UserError(f"--seeds must be at least 0 (0: the canvases and the teacher only), got {args.seeds}")
        only = [int(s) for s in args.only_seeds.split(",")] if args.only_seeds else None
        if only and any(s < 0 or s >= args.seeds for s in only):
            raise UserError(f"--only-seeds must be among 0..{args.seeds - 1}, got {args.only_seeds}")
        methods = [m for m in (args.methods or "").split(",") if m] or None
        print(run_detection_suite(args.seeds, methods, only, args.threads, Path(args.root), Path(args.results),
                                  finish_by=finish_by(args)))
    elif args.bench_command == "status":
        from kdforge.bench.status import campaign_status, campaign_table, status_table, suite_status

        if args.suite is None:
            print(campaign_table(campaign_status(args.seeds, args.root, args.results)))
        else:
            methods = [m for m in (args.methods or "").split(",") if m] or None
            print(status_table(suite_status(args.suite, args.budget, args.seeds, methods, args.root, args.results)))
    elif args.bench_command == "teacher":
        import sys

        from kdforge.bench.accuracy import suite_teacher

        def to_stderr(message):  # stdout carries the folder alone, for $(kdforge bench teacher ...)
            print(message, file=sys.stderr)

        print(suite_teacher(args.suite, args.budget, args.root, args.threads, not args.no_train, to_stderr, args.row,
                            args.results, args.store))
    elif args.bench_command == "smoke":
        from kdforge.bench.smoke import run_smoke

        only = [m for m in (args.only or "").split(",") if m] or None
        print(run_smoke(args.suite, Path(args.results), args.threads, only))
    elif args.bench_command == "regime":
        from kdforge.bench.regime import write_regime

        print(Path(write_regime(args.suite, Path(args.results), args.tolerance, args.max_minutes, args.split,
                                Path(args.runs), args.val_per_class)).read_text())
    elif args.bench_command == "adopt":
        from kdforge.bench.adopt import adopt_rows, adopt_runs
        from kdforge.bench.suites import SUITES

        if args.source not in SUITES.names() and (Path(args.source).is_dir() or args.source.endswith(".runs.jsonl")):
            adopted = adopt_runs(Path(args.source), args.target, args.budget, args.results, args.root)
        else:
            adopted = adopt_rows(args.source, args.target, args.results, budget=args.budget)
        print(f"adopted {len(adopted)} row(s): {', '.join(adopted) or 'none'}")
    elif args.bench_command == "withdraw":
        from kdforge.bench.withdraw import withdraw

        rows = [r for r in (args.rows or "").split(",") if r] or None
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s] if args.seeds else None
        except ValueError:
            raise UserError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
        withdraw(args.suite, args.budget, args.reason, rows, seeds, args.older_teacher, args.results, args.root)
    elif args.bench_command == "reproduce":
        from kdforge.bench.reproduce import reproduce

        try:
            seeds = [int(s) for s in args.seeds.split(",") if s]
        except ValueError:
            raise UserError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
        reproduce(args.suite, [r for r in args.rows.split(",") if r], seeds, args.budget, args.root, args.results)
    elif args.bench_command == "before-after":
        from kdforge.bench.report import before_after

        table = before_after(args.suites.split(","), Path(args.before), Path(args.after), args.rows.split(","))
        if args.out:
            from kdforge.fileio import atomic_write_text

            title = (f"# Before / after: {args.rows} in {args.suites}\n\nGenerated by `kdforge bench before-after "
                     f"--before {args.before} --after {args.after} --suites {args.suites} --rows {args.rows}`.\n\n")
            atomic_write_text(Path(args.out), title + table + "\n")
        print(table)
    elif args.bench_command == "compare":
        from kdforge.bench.report import compare

        print(compare(args.suite, Path(args.results)))
    else:
        from kdforge.bench.results_page import write_results_page

        print(write_results_page(Path(args.results), Path(args.out)))
    return 0


def cmd_export(args) -> int:
    from kdforge.export import export

    card = export(args.run, args.format, args.out, args.check, args.data_root)
    check = card.get("check")
    extra = (f"; {check['images']} test images: largest logit difference {check['max_abs_logit_difference']:.2e}, "
             f"same top-1 on {100 * check['same_top1']:.1f} %") if check else ""
    print(f"{args.out}: {card['architecture']} ({card['bytes']} bytes){extra}; card {args.out}.json")
    return 0


COMMANDS = {"bench": cmd_bench, "export": cmd_export, "fewshot": cmd_fewshot, "train": cmd_train, "eval": cmd_eval,
            "list": cmd_list, "plot": cmd_plot, "demo": cmd_demo, "sweep": cmd_sweep,
            "detection-data": cmd_detection_data}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (TrainingStopped, SittingOver) as exc:
        print(f"kdforge: {exc}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"kdforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdforge: interrupted", file=sys.stderr)
        return 130
