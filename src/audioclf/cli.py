"""The ``audioclf`` command line: a verb, its arguments, and a call into the library.

Rich output (tables, progress bars) lives here only; the library logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from audioclf.errors import AudioclfError

console = Console(stderr=True)
out = Console()

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None], str, bool]] = {}


def command(
    name: str, help: str, run: Command, *, trains: bool = False
) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable]:
    """Register ``audioclf <name>``: decorates the function that adds its arguments;
    ``run(args)`` does the work and returns the exit status; ``trains`` marks verbs that
    run Lightning."""

    def wrap(add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
        if name in _COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        _COMMANDS[name] = (run, add_args, help, trains)
        return add_args

    return wrap


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar exposed as the library's ``progress(desc, done, total)`` callback."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    ) as prog:
        tasks: dict[str, Any] = {}

        def update(desc: str, done: int, total: int | None) -> None:
            if desc not in tasks:
                tasks[desc] = prog.add_task(desc, total=total)
            prog.update(tasks[desc], completed=done, total=total)

        yield update


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
        elif isinstance(v, (int, str)):
            table.add_row(k, str(v))
    return table


MODEL_SOURCE_HELP = ("model source: an audioclf checkpoint, a published checkpoint file (PANNs .pth, BEATs .pt, "
                     "EAT best_model.pt/chkpnt.pt, ESPnet BEATs), a catalog name (see `audioclf models --pretrained`), "
                     "a Hugging Face model directory or hf:ORG/REPO[@REV]")


def add_model_source_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--offline``, shared by every verb that takes a model source."""
    p.add_argument("--model", metavar="NAME", help="architecture of a published file when it is not recognised "
                   "(a registered name, see `audioclf models`)")
    p.add_argument("--offline", action="store_true", help="use only the download caches (as HF_HUB_OFFLINE=1); "
                   "a missing file is named")


def _setup_logging(verbose: int, trains: bool = False) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("audioclf").setLevel(logging.INFO if verbose == 0 else level)
    if trains:
        # Lightning is chatty at INFO (tips, device banners) and sets its own level and
        # handler when first imported, so import it before quieting it; keep its warnings.
        # Only verbs that train pay for the import.
        import lightning  # noqa: F401

        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
            logging.getLogger(name).setLevel(logging.WARNING if verbose < 2 else logging.INFO)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


# --- verbs --------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from audioclf.demo import prepare_demo_data, run_demo

    t0 = time.time()
    console.print(f"[bold]audioclf demo[/]: synthetic data -> cnn_lite -> evaluate -> predict, in {args.workdir}")
    t = time.time()
    with progress_bar() as prog:
        prepare_demo_data(args.workdir, args.clips_per_class, args.workers, prog)
    prepared = time.time() - t
    res = run_demo(args.workdir, args.overrides, clips_per_class=args.clips_per_class, workers=args.workers)
    res.seconds["prepare"] = prepared  # run_demo found the store ready
    out.print(metrics_table(res.test_metrics, "held-out test split"))
    out.print(f"example file: {res.example_file} (a '{res.example_label}' the model never saw)")
    for p in res.predictions:
        out.print(f"  {p.label:<14} {p.score:.3f}")
    out.print(f"run directory: {res.run_dir}")
    out.print(f"checkpoint:    {res.checkpoint}")
    out.print(f"report:        {res.report}  (open it in a browser: curves, confusion matrix, playhead)")
    out.print(f"total time:    {time.time() - t0:.1f} s  ({', '.join(f'{k} {v:.1f} s' for k, v in res.seconds.items())})")
    return 0


@command("demo", "run the whole path offline on the built-in synthetic data", cmd_demo, trains=True)
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="audioclf-demo", help="where data and runs go (default: ./audioclf-demo)")
    p.add_argument("--clips-per-class", type=int, default=80)
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=3")


def cmd_prepare(args: argparse.Namespace) -> int:
    from audioclf.config import parse_override
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset

    options = {}
    for text in args.option:
        key, value = parse_override(text)
        options[".".join(key)] = value
    if args.path and args.root:
        raise ValueError(f"give the dataset's place once: {args.path!r} or --root {args.root!r}")
    args.root = args.root or args.path
    source = create_source(args.dataset, args.root, **options)
    if args.out:
        dest = Path(args.out)
    elif getattr(source, "hub_id", None):  # a Hub dataset: in the working directory
        dest = Path(source.store_name())
    else:  # beside the data: in ROOT, or beside ROOT when it is a manifest file
        root = Path(args.root or ".")
        dest = (root.parent if root.is_file() else root) / source.store_name()
    with progress_bar() as prog:
        report = prepare_dataset(
            source, dest, sample_rate=args.sample_rate, workers=args.workers, resume=not args.no_resume,
            overwrite=args.overwrite, shard_size=args.shard_size, progress=prog,
        )
    out.print(f"store: {report.store}  clips: {report.clips}  skipped: {len(report.skipped)}  sample rate: {report.sample_rate} Hz")
    for name, n in report.per_split.items():
        out.print(f"  split {name}: {n}")
    for name, n in report.per_fold.items():
        out.print(f"  fold {name}: {n}")
    if report.skipped:
        console.print(f"[yellow]{len(report.skipped)} file(s) skipped; reasons in the prepare report[/]")
    return 0


@command("prepare", "download/find, decode and pack a dataset into a store", cmd_prepare)
def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="catalog name (see `audioclf datasets`)")
    p.add_argument("path", nargs="?", metavar="NAME_OR_PATH",
                   help="the dataset's directory (the same as --root); for hf also a Hub dataset id, e.g. danavery/urbansound8K")
    p.add_argument("--root", help="dataset directory (downloads go here)")
    p.add_argument("--out", help="store path (default: the dataset's store name, e.g. esc50.h5, in ROOT)")
    p.add_argument("--sample-rate", type=int, default=None, help="resample to this rate (default: the dataset's own)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--shard-size", type=int, default=None, help="write a directory of shards of this many clips")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing store")
    p.add_argument("--no-resume", action="store_true", help="ignore an unfinished .partial store")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option (repeatable)")


def cmd_datasets(args: argparse.Namespace) -> int:
    from audioclf.data.catalog import get_source_class, list_datasets

    table = Table(title="dataset catalog")
    for col in ("name", "classes", "clips", "protocol", "licence", "options"):
        table.add_column(col)
    for name in list_datasets():
        cls = get_source_class(name)
        i = cls.info
        opts = ", ".join(f"{k}={o.default!r}" for k, o in cls.options.items())
        table.add_row(name, str(i.classes), str(i.clips), i.protocol, i.license, opts)
    out.print(table)
    return 0


@command("datasets", "list the dataset catalog", cmd_datasets)
def _datasets_args(p: argparse.ArgumentParser) -> None:
    pass


def _pretrained_table(args: argparse.Namespace) -> int:
    """``audioclf models --pretrained``: the published-weights catalog."""
    from audioclf.models.pretrained import get_pretrained, list_pretrained

    cols = ("name", "architecture", "source", "checksum", "licence", "published metric", "paper")
    rows = []
    for name in list_pretrained():
        e = get_pretrained(name)
        if args.filter and args.filter not in name:
            continue
        # the table shows URLs without their query string (BEATs' carries a long access signature)
        source = e.source if args.json else e.source.split("?", 1)[0]
        rows.append((e.name, e.architecture, source, e.checksum_text(), e.licence, e.metric, e.paper))
    if args.json:
        out.print_json(json.dumps([dict(zip(cols, r, strict=True)) for r in rows]))
        return 0
    table = Table(title="published weights (audioclf predict NAME clip.wav)")
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*r)
    out.print(table)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from audioclf.models import create_model, get_model_info, list_models

    if args.pretrained:
        return _pretrained_table(args)

    table = Table(title="models")
    for col in ("name", "family", "params", "sample rate", "clip", "description"):
        table.add_column(col)
    rows = []
    for name in list_models(args.filter):
        info = get_model_info(name)
        params = "-"
        clip = f"{info.clip_seconds:g} s" if info.clip_seconds else "-"
        rate = f"{info.sample_rate} Hz"
        if not args.no_params:
            try:
                m = create_model(name, args.classes)
                params = f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M"
                rate = f"{m.sample_rate} Hz"
                clip = f"{m.clip_samples / m.sample_rate:g} s"
            except Exception as err:  # noqa: BLE001 - e.g. an optional extra missing
                params = f"n/a ({type(err).__name__})"
        rows.append((name, info.family, params, rate, clip, info.description))
        table.add_row(*rows[-1])
    if args.json:
        out.print_json(json.dumps([dict(zip(("name", "family", "params", "sample_rate", "clip", "description"), r, strict=True)) for r in rows]))
    else:
        out.print(table)
    return 0


@command("models", "list the model zoo", cmd_models)
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("filter", nargs="?", help="substring of the names to show")
    p.add_argument("--classes", type=int, default=527, help="class count used to count parameters (default 527)")
    p.add_argument("--no-params", action="store_true", help="do not build the models to count parameters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--pretrained", action="store_true", help="list the published-weights catalog instead: name, "
                   "architecture, source, checksum, licence, published metric")


def cmd_train(args: argparse.Namespace) -> int:
    from audioclf.training.defaults import load_train_config
    from audioclf.training.trainer import train

    recipe, overrides = args.config, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]  # `audioclf train key=value ...`
    # no recipe file: a default recipe chosen by the store (logged, with how to turn it off)
    config, choice = load_train_config(recipe, overrides, announce=False)
    for line in choice.lines() if choice else ():
        console.print(line, highlight=False, markup=False)
    res = train(config)
    if res.val_metrics:
        out.print(metrics_table(res.val_metrics, "last validation epoch"))
    if res.test_metrics:
        out.print(metrics_table(res.test_metrics, "test (best checkpoint)"))
    out.print(f"run directory: {res.run_dir}\nbest checkpoint: {res.best_checkpoint}\ntime: {res.seconds:.1f} s")
    return 0


@command("train", "train from a YAML recipe with dotted overrides", cmd_train, trains=True)
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML recipe (omit it to train with the default recipe chosen by "
                   "what the store is; recipe=none for bare training)")
    p.add_argument("overrides", nargs="*", help="key.path=value, e.g. trainer.max_epochs=3 data.batch_size=16")


def cmd_resume(args: argparse.Namespace) -> int:
    from audioclf.training.trainer import load_resume_config, train

    config = load_resume_config(args.run, args.overrides)
    res = train(config)
    if res.test_metrics:
        out.print(metrics_table(res.test_metrics, "test (best checkpoint)"))
    out.print(f"run directory: {res.run_dir}\nsteps: {res.global_step}\nbest checkpoint: {res.best_checkpoint}\ntime: {res.seconds:.1f} s")
    return 0


@command("resume", "continue a stopped run from its last checkpoint (its own config.yaml)", cmd_resume, trains=True)
def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (continues from checkpoints/last.ckpt) or a checkpoint in one")
    p.add_argument("overrides", nargs="*", help="key.path=value, e.g. trainer.max_epochs=20 to train longer")


def cmd_cv(args: argparse.Namespace) -> int:
    from audioclf.training.cv import cross_validate
    from audioclf.training.defaults import load_train_config

    config, _ = load_train_config(args.config, args.overrides)
    res = cross_validate(config, folds=args.folds, cv_dir=args.cv_dir)
    names = res.metric_names[:2]
    table = Table(title=f"{len(res.folds)}-fold cross-validation (one fresh model per fold)")
    for col in ("fold", *names, "clips", "run"):
        table.add_column(col, justify="right" if col not in ("run",) else "left")
    for f in res.folds:
        table.add_row(str(f.fold), *(f"{f.test_metrics.get(m, float('nan')):.4f}" for m in names), str(f.test_metrics.get("clips", "")), f.run_dir.name)
    table.add_section()
    table.add_row("mean ± std", *(f"{res.mean.get(m, float('nan')):.4f} ± {res.std.get(m, float('nan')):.4f}" for m in names), "", "")
    out.print(table)
    out.print(f"CV directory: {res.cv_dir}\ntable: {res.table_csv} and {res.table_json.name}")
    return 0


@command("cv", "cross-validate a recipe over the store's official folds (a fresh model per fold)", cmd_cv, trains=True)
def _cv_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML recipe")
    p.add_argument("overrides", nargs="*", help="key.path=value, e.g. trainer.max_epochs=3")
    p.add_argument("--folds", type=int, nargs="+", help="test folds to run (default: all the store's folds)")
    p.add_argument("--cv-dir", help="complete an earlier CV directory (finished folds are kept)")


def cmd_tune(args: argparse.Namespace) -> int:
    from audioclf.training.tune import tune

    recipe, overrides = args.recipe, list(args.overrides)
    if args.resume and recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]

    def shown(v: Any) -> str:  # searched floats with 4 significant digits
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    def progress(row: dict[str, Any]) -> None:
        value = "–" if row["value"] is None else f"{row['value']:.4f}"
        params = ", ".join(f"{k}={shown(v)}" for k, v in row["params"].items())
        console.print(f"trial {row['number']}: {row['state']} {value}  {params}", highlight=False, markup=False)

    res = tune(
        recipe, args.trials, overrides, name=args.name, resume=args.resume, protocol=args.protocol,
        cv_folds=args.cv_folds, prune=not args.no_prune, seed=args.seed, timeout=args.timeout, progress=progress,
    )
    keys = sorted({k for r in res.trials for k in r["params"]})
    table = Table(title=f"{len(res.trials)} trial(s), scored by {res.metric} on validation data (never the test data)")
    for col in ("trial", "state", res.metric, *keys):
        table.add_column(col, justify="right" if col not in ("state",) else "left")
    for r in res.trials:
        table.add_row(str(r["number"]), r["state"], "–" if r["value"] is None else f"{r['value']:.4f}",
                      *(shown(r["params"].get(k, "")) for k in keys))
    out.print(table)
    if res.best_recipe is not None:
        out.print(f"best: {res.metric} {res.best_value:.4f} with "
                  f"{', '.join(f'{k}={shown(v)}' for k, v in res.best_params.items())}")
        out.print(f"best recipe: {res.best_recipe}  (train it: audioclf train {res.best_recipe})")
    out.print(f"tune directory: {res.tune_dir}\nreport: {res.report}")
    return 0


@command("tune", "search hyperparameters of a recipe's tune: section with Optuna (scored on validation data)",
         cmd_tune, trains=True)
def _tune_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Search the settings a recipe lists under `tune:` with Optuna: dotted config keys, each a range\n"
        "{low, high[, log, step]} or {choices: [...]}. Each trial trains the recipe with its values and is\n"
        "scored on validation data only (never the test split or fold); the median pruner stops trials\n"
        "that trail the others. The search lives in <output_dir>/<name>-tune/ (SQLite study, one run per\n"
        "trial, trials.csv, report.html) and continues when run again; best.yaml there is the best config\n"
        "as a recipe for `audioclf train`."
    )
    p.epilog = (
        "examples:\n"
        "  audioclf tune my_recipe.yaml --trials 20\n"
        "  audioclf tune my_kfold_recipe.yaml --trials 30 --protocol cv --cv-folds 3 trainer.max_epochs=5\n"
        "  audioclf tune --resume runs/my-tune --trials 40        # continue: finished trials are kept\n"
        "\n"
        "recipe section:\n"
        "  tune:\n"
        "    optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "    data.augment.pitch_shift.p: {choices: [0.0, 0.5]}\n"
        "    optim.scheduler: {choices: [cosine, plateau]}\n"
    )
    p.add_argument("recipe", nargs="?", help="YAML recipe with a tune: section (omit it with --resume)")
    p.add_argument("overrides", nargs="*", help="key.path=value applied to the recipe before the search, "
                   "e.g. trainer.max_epochs=5")
    p.add_argument("--trials", type=int, default=20, help="finished trials (completed or pruned) to reach, "
                   "counting those of an earlier run of the same search (default 20)")
    p.add_argument("--name", help="search name: its directory is <output_dir>/<name>-tune (default: the recipe's name)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search in this tune directory, with its own recipe.yaml")
    p.add_argument("--protocol", choices=("val", "cv"), default="val",
                   help="val: best validation figure of one run per trial (default); cv: for a k-fold recipe, the "
                   "mean over runs that validate on each other fold (the test fold is never used)")
    p.add_argument("--cv-folds", type=int, help="with --protocol cv: use only the first N validation folds")
    p.add_argument("--no-prune", action="store_true", help="run every trial to the end (no median pruner)")
    p.add_argument("--seed", type=int, help="sampler seed (default: the recipe's seed)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from audioclf.training.evaluate import default_evaluation_path, evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint, args.store, split=args.split, fold=args.fold, batch_size=args.batch_size,
        num_workers=args.workers, per_class=True,
    )
    summary = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    out.print(metrics_table(summary, f"{Path(args.checkpoint).name} on {Path(args.store).name} ({metrics['split']})"))
    dest = Path(args.output) if args.output else default_evaluation_path(args.checkpoint)
    # metrics.json style: what was evaluated, then the figures (per class and confusion matrix included)
    dest.write_text(json.dumps({"checkpoint": str(args.checkpoint), "store": str(args.store), **metrics}, indent=2))
    out.print(f"metrics written to {dest}")
    if args.plots:
        from audioclf.reporting.plots import evaluation_figures, save_figure

        for name, fig in evaluation_figures(metrics).items():
            out.print(f"plot written to {save_figure(fig, Path(args.plots) / f'{name}.png')}")
    return 0


@command("evaluate", "score a checkpoint on a store split or fold", cmd_evaluate)
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("store")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", default="test", help="named split (default: test)")
    g.add_argument("--fold", type=int, help="evaluate on this fold instead of a split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--output", help="metrics JSON (default: <run>/evaluation.json for a checkpoint in a run, "
                   "else <checkpoint name>.evaluation.json beside it)")
    p.add_argument("--plots", metavar="DIR", help="also write the confusion matrix (single-label) and per-class "
                   "F1 or AP bars as PNG files to DIR")


def _predict_timeline(clf: Any, args: argparse.Namespace) -> int:
    """``predict --timeline``: frame-wise scores per file, written to --out, events printed."""
    if args.out and len(args.files) > 1:
        raise ValueError("--out names one output file; give one audio file with it (or leave --out out)")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: a timeline is written as .csv or .json")
    report = {}
    for f in args.files:
        tl = clf.predict_timeline(f, window=args.window, hop=args.hop, batch_size=args.batch_size)
        events = tl.events(args.threshold, args.min_duration, top_k=args.events)
        entry: dict[str, Any] = {
            "duration": round(tl.duration, 3), "frames": len(tl.starts),
            "top": [{"label": k, "score": round(v, 6)} for k, v in tl.top_labels(args.top_k)],
            "events": [e.to_dict() for e in events],
        }
        if args.out:
            entry["written"] = str(tl.save(args.out, args.threshold, args.min_duration))
        report[f] = entry
        if args.json:
            continue
        out.print(f"[bold]{f}[/]  {tl.duration:.2f} s, {len(tl.starts)} windows of {tl.window:g} s every {tl.hop:g} s")
        for item in entry["top"]:
            out.print(f"  {item['label']:<24} {item['score']:.4f}")
        out.print(f"  events (score >= {args.threshold:g}, top {args.events}):" if events else
                  f"  no events with score >= {args.threshold:g}")
        for e in sorted(events, key=lambda e: e.start):  # the best ones, in time order
            out.print(f"    {e.start:9.2f} - {e.end:9.2f} s  {e.label:<24} peak {e.peak:.3f}")
        if args.out:
            out.print(f"  timeline written to {entry['written']}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from audioclf.inference import Classifier

    clf = Classifier.from_pretrained(args.checkpoint, model=args.model, offline=args.offline)
    if args.timeline:
        return _predict_timeline(clf, args)
    if args.out or args.window or args.hop:
        raise ValueError("--out, --window and --hop go with --timeline")
    results = {}
    for f in args.files:
        results[f] = [p.to_dict() for p in clf.predict(f, top_k=args.top_k)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for f, preds in results.items():
            out.print(f"[bold]{f}[/]")
            for p in preds:
                out.print(f"  {p['label']:<24} {p['score']:.4f}")
    return 0


@command("predict", "label audio files with a trained checkpoint or published weights", cmd_predict)
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    p.add_argument("files", nargs="+")
    add_model_source_args(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON only")
    t = p.add_argument_group("timeline (long audio: sliding windows, frame-wise scores, events)")
    t.add_argument("--timeline", action="store_true", help="score each file window by window, streaming it")
    t.add_argument("--window", type=float, help="window length, seconds (default: the model's clip)")
    t.add_argument("--hop", type=float, help="window step, seconds (default: half the window)")
    t.add_argument("--out", help="write the frame scores to this .csv or .json file")
    t.add_argument("--threshold", type=float, default=0.5, help="event threshold on frame scores (default 0.5)")
    t.add_argument("--min-duration", type=float, default=0.0, help="drop events shorter than this, seconds")
    t.add_argument("--events", type=int, default=10, help="events printed per file, best first (default 10)")
    t.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")


def cmd_export(args: argparse.Namespace) -> int:
    from audioclf.inference.export import export_checkpoint

    try:
        res = export_checkpoint(
            args.checkpoint, args.out, format=args.format, frontend=args.frontend, opset=args.opset,
            verify=not args.no_verify, model=args.model, offline=args.offline,
        )
    except ImportError as err:  # onnx / onnxruntime missing: the message says what to install
        raise ValueError(str(err)) from err
    for path in res.paths:
        out.print(f"written: {path}")
    if res.max_abs_diff is not None:
        out.print(f"parity with PyTorch on synthetic audio: max |diff| {res.max_abs_diff:.2g}")
    if res.frontend_path is not None:
        out.print(f"run {res.frontend_path.name} on the waveform first and feed its output to {res.model_path.name}")
    return 0


@command("export", "export a checkpoint to ONNX or TorchScript (checked against PyTorch)", cmd_export)
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    add_model_source_args(p)
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="output file (default: the checkpoint's path with .onnx or .pt)")
    p.add_argument("--frontend", choices=("inside", "separate"), default="inside",
                   help="inside: waveform -> logits in one file (default); separate: also <out>.frontend.* "
                   "mapping waveform -> features, and the main file takes features")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--no-verify", action="store_true", help="skip running the exported file against PyTorch")


def cmd_info(args: argparse.Namespace) -> int:
    from audioclf.data.store import Store

    s = Store(args.store)
    out.print_json(json.dumps(s.summary()))
    return 0


@command("info", "describe a packed store", cmd_info)
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")


def cmd_verify(args: argparse.Namespace) -> int:
    from audioclf.data.store import verify_store

    report = verify_store(args.store)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for problem in report.problems:
        console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if not report.ok:
        console.print(f"{args.store}: {len(report.problems)} problem(s) found", highlight=False)
        return 2
    out.print(f"{args.store}: ok, {report.clips} clips in {report.files} file(s); "
              f"checksums of {report.checked} file(s) match", highlight=False)
    return 0


@command("verify", "check a packed store completely: structure, labels, folds and the checksums prepare recorded", cmd_verify)
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Check a packed store (a file, or a shard directory) completely: attributes, offsets, targets and folds\n"
        "(what every verb checks on opening it), then every array against the checksum prepare recorded,\n"
        "which also catches flipped audio bytes. Exit 0: sound; exit 2: the problems are listed."
    )
    p.epilog = "examples:\n  audioclf verify esc50.h5\n  audioclf verify audioset/  # a shard directory"
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("store", help="store file or shard directory")


def cmd_report(args: argparse.Namespace) -> int:
    from audioclf.reporting import write_report

    evaluate = None
    if args.store is not None:
        from audioclf.training.evaluate import evaluate_model as evaluate
    path = write_report(
        args.target, args.out, args.audio, plots_dir=args.plots, store=args.store, split=args.split,
        fold=args.fold, rows=args.rows, title=args.title, model=args.model, offline=args.offline, evaluate=evaluate,
    )
    out.print(f"report written to {path}")
    if args.plots:
        out.print(f"figures written to {args.plots}")
    return 0


@command("report", "write a self-contained HTML report of a run (and of an audio file, with a playhead)", cmd_report)
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="run directory or checkpoint (or any model source: a published file, a catalog "
                   "name, hf:ORG/REPO)")
    add_model_source_args(p)
    p.add_argument("audio", nargs="?", help="audio file to show with its spectrogram, playhead and prediction timeline")
    p.add_argument("--out", help="HTML file (default: <run>/report.html)")
    p.add_argument("--store", help="evaluate the checkpoint on this store for per-class figures "
                   "(default: the run's evaluation.json when present)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", default="test", help="store split for --store (default: test)")
    g.add_argument("--fold", type=int, help="store fold for --store instead of a split")
    p.add_argument("--rows", type=int, default=6, help="classes shown in the timeline (default 6)")
    p.add_argument("--plots", metavar="DIR", help="also write the figures as PNG files to DIR")
    p.add_argument("--title", help="page title")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from audioclf.serve import ServiceSettings, serve
    except ImportError as err:
        raise ValueError(f"audioclf serve needs FastAPI and uvicorn ({err.name} is missing): "
                         "pip install fastapi uvicorn python-multipart") from err

    settings = ServiceSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_seconds=args.max_seconds, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, max_decoded_samples=args.max_decoded_samples,
        decode_workers=args.decode_workers, request_timeout=args.request_timeout, max_connections=args.max_connections,
    )
    console.print(f"serving {args.checkpoint} on http://{args.host}:{args.port}  (API docs: /docs, page: /)")
    serve(args.checkpoint, args.host, args.port, settings, device=args.device,
          log_level="debug" if args.verbose > 1 else "info", model=args.model, offline=args.offline)
    return 0


@command("serve", "serve a checkpoint over HTTP (POST /predict, POST /timeline, a player page at /)", cmd_serve)
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    add_model_source_args(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted file, MiB (default 25)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest accepted audio, seconds (default 600)")
    p.add_argument("--max-batch", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its forward pass (default 5)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    p.add_argument("--max-decoded-samples", type=int, default=57_600_000,
                   help="most samples (rate x seconds x channels, from the header) an upload may decode to "
                   "(default 57.6 M: 48 kHz stereo for 10 minutes)")
    p.add_argument("--decode-workers", type=int, default=2, help="uploads decoded at once (default 2)")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds a client has to send its request headers and body, then 408 / closed (default 60)")
    p.add_argument("--max-connections", type=int, default=64, help="open connections at once; more get 503 (default 64)")


def cmd_push(args: argparse.Namespace) -> int:
    import tempfile

    from audioclf.models.hub import check_repo_id, is_hub_dir, push_to_hub, save_bundle_pretrained
    from audioclf.reporting.runs import locate_run

    check_repo_id(args.repo_id)  # before any conversion
    source = Path(args.source)
    if is_hub_dir(source):  # written earlier with --dir: upload it as it is
        if args.dir:
            raise ValueError(f"{source} is already a Hub-format directory; push it without --dir")
        url = push_to_hub(source, args.repo_id, private=args.private, revision=args.revision)
        out.print(f"pushed {source} to {args.repo_id}: {url}")
        return 0
    files = locate_run(source)
    if files.checkpoint is None:
        raise FileNotFoundError(f"{source}: no checkpoint to push (checkpoints/best.ckpt or last.ckpt)")
    metrics = json.loads(files.metrics_json.read_text()) if files.metrics_json else None
    card = {"repo_id": args.repo_id, "license": args.license, "datasets": args.dataset, **_store_card(files)}
    if args.dataset:
        card["datasets"] = args.dataset
    if args.dir:
        folder = save_bundle_pretrained(files.checkpoint, args.dir, metrics=metrics, card=card)
        out.print(f"Hub-format directory written to {folder} (model.safetensors, config.json, README.md); "
                  f"upload it with: audioclf push {folder} {args.repo_id}")
        return 0
    with tempfile.TemporaryDirectory(prefix="audioclf-push-") as tmp:
        folder = save_bundle_pretrained(files.checkpoint, Path(tmp) / "model", metrics=metrics, card=card)
        url = push_to_hub(folder, args.repo_id, private=args.private, revision=args.revision)
    out.print(f"pushed {files.checkpoint} to {args.repo_id}: {url}")
    return 0


def _store_card(files: Any) -> dict[str, Any]:
    """What the run's store says about its data, for the model card: the dataset's name and,
    for a Hub dataset, its id (nothing when the run's config or store is not at hand)."""
    import yaml

    from audioclf.data.store import Store

    config = yaml.safe_load(files.config.read_text()) if files.config else None
    store = ((config or {}).get("data") or {}).get("store")
    if not store or not Path(store).exists():
        return {}
    try:
        header = Store(store).header
    except Exception as err:  # noqa: BLE001 - the card is made without it
        logging.getLogger("audioclf").info("store %s not read for the model card (%s)", store, err)
        return {}
    hub_id = (header.provenance.get("hf_dataset") or {}).get("hub_id")
    # the catalog's own datasets have telling names; "hf", "folder" say less than the file
    name = hub_id or (header.dataset if header.dataset not in ("hf", "folder", "custom") else Path(store).stem)
    return {"dataset": name, **({"datasets": [hub_id]} if hub_id else {})}


@command("push", "write a run's model in audioclf's Hub format and upload it to the Hugging Face Hub", cmd_push)
def _push_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Write a run's best checkpoint (or any audioclf checkpoint) as model.safetensors, config.json and a "
        "model card README.md (metrics, dataset, recipe, usage), then upload it to the Hub repository ORG/NAME "
        "(created if missing). With --dir the directory is only written locally (save_pretrained); push that "
        "directory later by naming it instead of the run. Log in first with `hf auth login` (or set HF_TOKEN)."
    )
    p.epilog = (
        "examples:\n"
        "  audioclf push runs/esc50-cnn14-20261202-0101 my-org/esc50-cnn14 --private\n"
        "  audioclf push runs/esc50-cnn14-20261202-0101/checkpoints/best.ckpt my-org/esc50-cnn14 --dir esc50-cnn14\n"
        "  audioclf push esc50-cnn14 my-org/esc50-cnn14 --revision v1"
    )
    p.add_argument("source", help="run directory, audioclf checkpoint, or a directory written with --dir")
    p.add_argument("repo_id", metavar="ORG/NAME", help="Hub repository to upload to (named in the card's usage snippet)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", help="branch to upload to (created from main when missing; default: main)")
    p.add_argument("--dir", metavar="OUT", help="only write the Hub-format directory OUT; upload nothing")
    p.add_argument("--license", help="licence for the card's front matter (e.g. cc-by-4.0, that of the training data)")
    p.add_argument("--dataset", action="append", default=[], metavar="HUB_ID",
                   help="Hub dataset id the model was trained on, for the card (repeatable)")


def cmd_embed(args: argparse.Namespace) -> int:
    from audioclf.inference import Classifier
    from audioclf.inference.embed import (
        EMBEDDING_FORMATS,
        embed_files,
        embed_store,
        write_embeddings,
    )

    if Path(args.out).suffix.lower() not in EMBEDDING_FORMATS:
        raise ValueError(f"--out {args.out}: embeddings are written as {', '.join(EMBEDDING_FORMATS)}")
    clf = Classifier.from_pretrained(args.model_source, model=args.model, offline=args.offline, device=args.device)
    store = len(args.inputs) == 1 and Path(args.inputs[0]).suffix.lower() in (".h5", ".hdf5") or (
        len(args.inputs) == 1 and Path(args.inputs[0]).is_dir())
    if (args.split or args.fold is not None) and not store:
        raise ValueError("--split and --fold select clips of a store; give one store (.h5 or a shard directory)")
    with progress_bar() as prog:
        if store:
            emb = embed_store(clf, args.inputs[0], split=args.split, fold=args.fold, batch_size=args.batch_size,
                              progress=prog)
        else:
            emb = embed_files(clf, args.inputs, batch_size=args.batch_size, progress=prog)
    for path in write_embeddings(emb, args.out):
        out.print(f"written: {path}")
    out.print(f"{len(emb)} embeddings of dimension {emb.embeddings.shape[1]} ({clf.info['model']})")
    return 0


@command("embed", "write one clip embedding per audio file or store clip (.npy, .npz or .parquet)", cmd_embed)
def _embed_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Compute each clip's embedding (the model's documented one: PANNs fc1, EAT class token, "
                     "BEATs/AST pooled encoder output) for audio files or the clips of a packed store, and write "
                     "them with the file or clip name and label columns.")
    p.epilog = ("examples:\n"
                "  audioclf embed panns-cnn14 dog.wav rain.flac --out emb.npy      # + emb.csv (index,name,label)\n"
                "  audioclf embed runs/esc50-*/checkpoints/best.ckpt esc50.h5 --fold 5 --out fold5.parquet\n"
                "  audioclf embed Cnn14_mAP=0.431.pth clips/*.wav --model cnn14 --out emb.npz")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model_source", metavar="MODEL", help=MODEL_SOURCE_HELP)
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_STORE", help="audio files, or one packed store (.h5 or a "
                   "shard directory)")
    p.add_argument("--out", required=True, help="output: .npy (with a .csv sidecar), .npz or .parquet")
    p.add_argument("--split", help="store split to embed (default: every clip)")
    p.add_argument("--fold", type=int, help="store fold to embed instead of a split")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_model_source_args(p)


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from audioclf import __version__

    parser = argparse.ArgumentParser(prog="audioclf", description="Train, evaluate and run audio classifiers.")
    parser.add_argument("--version", action="version", version=f"audioclf {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, add_args, help_text, _) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add_args(sp)
    return parser


# errors the library raises with a message meant for the user: AudioclfError, and the
# built-in kinds raised before it existed
# What a user can fix, printed as one line with exit 2. TypeError and KeyError are not
# here: they are programming bugs, printed with their traceback (exit 1). ValueError
# still is: model constructors and numeric checks raise it for settings out of range.
_USER_ERRORS = (AudioclfError, ValueError, FileNotFoundError, FileExistsError,
                PermissionError, IsADirectoryError, NotADirectoryError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fn, _, _, trains = _COMMANDS[args.command]
    _setup_logging(args.verbose, trains)
    try:
        return fn(args)
    except KeyboardInterrupt:
        # what was finished stays: a .partial store, a download's .part, last.ckpt resume
        console.print("[red]interrupted[/]")
        return 130
    except _USER_ERRORS as err:
        if args.verbose > 1:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__  # one line
        console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
