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
from typing import Any, NamedTuple

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

from audioclf.errors import AudioclfError, ConfigError, MissingDependencyError
from audioclf.registry import Registry

console = Console(stderr=True)
out = Console()

Command = Callable[[argparse.Namespace], int]


class Verb(NamedTuple):
    """One ``audioclf <verb>``: what runs it, what adds its arguments, and its help."""

    run: Command
    add_args: Callable[[argparse.ArgumentParser], None]
    help: str
    trains: bool  # runs Lightning (logging is set up for it)
    description: str  # heads `audioclf VERB --help`
    examples: tuple[str, ...]  # end it


_COMMANDS: Registry[Verb] = Registry("command")


def command(
    name: str, help: str, run: Command, *, trains: bool = False, description: str = "", examples: tuple[str, ...] = ()
) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable]:
    """Register ``audioclf <name>``: decorates the function that adds its arguments;
    ``run(args)`` does the work and returns the exit status; ``trains`` marks verbs that
    run Lightning. ``description`` (default: ``help``) heads ``--help``; ``examples``
    (copy-paste command lines, with ``# comments``) end it."""

    def wrap(add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
        _COMMANDS.add(name, Verb(run, add_args, help, trains, description or help, tuple(examples)))
        return add_args

    return wrap


# --- helpers ------------------------------------------------------------------------------


_QUIET = False  # -q: main() sets it; progress bars are then not drawn


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar exposed as the library's ``progress(desc, done, total)`` callback."""
    if _QUIET:
        yield lambda desc, done, total: None
        return
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


def _setup_logging(verbose: int, trains: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("audioclf").setLevel(logging.WARNING if quiet and not verbose else logging.INFO if verbose == 0 else level)
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
    res = run_demo(args.workdir, [*_global_overrides(args), *args.overrides], clips_per_class=args.clips_per_class, workers=args.workers)
    res.seconds["prepare"] = prepared  # run_demo found the store ready
    out.print(metrics_table(res.test_metrics, "held-out test split"))
    out.print(f"example scene: {res.example_file} (10 s the model never heard; "
              f"{', '.join(f'{label} at {start:g} s' for label, start, _ in res.example_events)})")
    out.print("  events found on its timeline (score >= 0.5):" if res.detected else "  no events found with score >= 0.5")
    for e in sorted(res.detected, key=lambda e: e.start):
        out.print(f"    {e.start:6.2f} - {e.end:6.2f} s  {e.label:<14} peak {e.peak:.3f}")
    out.print(f"run directory: {res.run_dir}")
    out.print(f"checkpoint:    {res.checkpoint}")
    out.print(f"report:        {res.report}  (open it in a browser: curves, confusion matrix, playhead)")
    out.print(f"total time:    {time.time() - t0:.1f} s  ({', '.join(f'{k} {v:.1f} s' for k, v in res.seconds.items())})")
    return 0


@command("demo", "run the whole path offline on the built-in synthetic data", cmd_demo, trains=True,
         description="Run the whole path offline on built-in synthetic sounds: prepare a store, train cnn_lite, "
         "evaluate it on the held-out test split, label a 10-second example scene and write the HTML report.",
         examples=("audioclf demo                                   # about a minute on a laptop CPU",
                   "audioclf demo --workdir /tmp/demo trainer.max_epochs=3",
                   "audioclf demo --clips-per-class 20 -q           # smaller and quiet"))
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="audioclf-demo", help="where data and runs go (default: ./audioclf-demo)")
    p.add_argument("--clips-per-class", type=int, default=80, help="synthetic clips per class (default 80)")
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
        raise ConfigError(f"give the dataset's place once: {args.path!r} or --root {args.root!r}")
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


@command("prepare", "download/find, decode and pack a dataset into a store", cmd_prepare,
         description="Download (or find) a dataset, check it, decode every clip to one sample rate and pack it "
         "into a store (.h5) that training, evaluation and reports read. An interrupted run resumes.",
         examples=("audioclf prepare esc50 --root data/esc50             # downloads, then packs data/esc50/esc50.h5",
                   "audioclf prepare folder --root my_sounds/            # ROOT/<label>/*.wav -> my_sounds/folder.h5",
                   "audioclf prepare synthetic --out syn.h5 -o clips_per_class=20"))
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


@command("datasets", "list the dataset catalog", cmd_datasets,
         description="List the dataset catalog: classes, clips, protocol, licence and the options that "
         "`audioclf prepare NAME -o KEY=VALUE` takes.",
         examples=("audioclf datasets", "audioclf prepare folder --help"))
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
    from audioclf.models import get_model_info, list_models, model_summary

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
            try:  # shapes on the meta device (or the cache) unless --build asks for real models
                m = model_summary(name, args.classes, build=args.build)
                params = f"{m.params / 1e6:.2f} M"
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


@command("models", "list the model zoo", cmd_models,
         description="List the model zoo: family, parameter count, input sample rate and clip length. Counts "
         "come from shapes alone (the meta device, cached after the first listing); --build builds each "
         "model for real.",
         examples=("audioclf models", "audioclf models cnn --classes 50       # CNN models, with a 50-class head",
                   "audioclf models --json | jq '.[].name'"))
def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("filter", nargs="?", help="substring of the names to show")
    p.add_argument("--classes", type=int, default=527, help="class count used to count parameters (default 527)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-params", action="store_true", help="do not count parameters (fastest)")
    g.add_argument("--build", action="store_true", help="build every model for real to count its parameters "
                   "(slow: tens of seconds with AST and BEATs; checks that each one constructs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--pretrained", action="store_true", help="list the published-weights catalog instead: name, "
                   "architecture, source, checksum, licence, published metric")


def cmd_train(args: argparse.Namespace) -> int:
    from audioclf.training.defaults import load_train_config
    from audioclf.training.trainer import train

    recipe, overrides = args.config, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]  # `audioclf train key=value ...`
    overrides = [*_global_overrides(args), *overrides]
    # no recipe file: a default recipe chosen by the store (logged, with how to turn it off)
    config, choice = load_train_config(recipe, overrides, announce=False)
    from audioclf.training.distributed import launch_rank_is_zero

    for line in choice.lines() if choice and launch_rank_is_zero() else ():  # under DDP: once
        console.print(line, highlight=False, markup=False)
    res = train(config)
    if res.rank:  # under DDP: rank 0 reports
        return 0
    if res.val_metrics:
        out.print(metrics_table(res.val_metrics, "last validation epoch"))
    if res.test_metrics:
        out.print(metrics_table(res.test_metrics, "test (best checkpoint)"))
    out.print(f"run directory: {res.run_dir}\nbest checkpoint: {res.best_checkpoint}\ntime: {res.seconds:.1f} s")
    return 0


@command("train", "train from a YAML recipe with dotted overrides", cmd_train, trains=True,
         description="Train a model from a YAML recipe (configs/<dataset>/<model>.yaml) and dotted overrides. "
         "Every key, with its type, default and allowed values: `audioclf config show` "
         "(`audioclf config show RECIPE` shows a recipe's resolved values). The run directory gets the "
         "resolved config.yaml, checkpoints, metrics and report.html.",
         examples=("audioclf train configs/esc50/cnn14.yaml data.fold=1",
                   "audioclf train data.store=my_sounds/folder.h5 model.name=cnn_lite trainer.max_epochs=20",
                   "audioclf train recipe.yaml --device cuda trainer.precision=16-mixed"))
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML recipe (omit it to train with the default recipe chosen by "
                   "what the store is; recipe=none for bare training; a first argument with '=' is an override)")
    p.add_argument("overrides", nargs="*", help="key.path=value, e.g. trainer.max_epochs=3 data.batch_size=16")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "examples:\n"
        "  audioclf train data.store=data/my_sounds.h5                    # default recipe chosen by the store\n"
        "  audioclf train configs/esc50/eat_s.yaml data.fold=1 trainer.max_epochs=3\n"
        "  audioclf train configs/audioset/cnn14.yaml trainer.devices=4 trainer.strategy=ddp   # 4 GPUs (docs/scaling.md)\n"
        "  torchrun --standalone --nproc_per_node=4 -m audioclf.cli train configs/audioset/cnn14.yaml \\\n"
        "      trainer.devices=4 trainer.strategy=ddp"
    )


def cmd_config(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from audioclf.config import Config, describe_config, load_config

    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]
    config = load_config(recipe, overrides) if recipe is not None or overrides else None
    keys = describe_config(config)
    if args.json:
        print(json.dumps([k.__dict__ for k in keys], indent=2))
        return 0
    defaults = {k.key: k.default for k in describe_config(Config())} if config is not None else {}
    out.print(f"[bold]config keys[/] ({recipe or 'defaults'}{' + overrides' if overrides else ''}): "
              "set them in a recipe, or on the command line as key.path=value"
              + ("; [bold]*[/] marks what the recipe changes" if config is not None else ""), highlight=False)
    section = None
    for k in keys:
        head = k.key.rsplit(".", 1)[0] if "." in k.key else "(top level)"
        if head != section:
            section = head
            out.print(f"\n[bold underline]{section}[/]", highlight=False)
        mark = "*" if config is not None and k.default != defaults.get(k.key) else " "
        allowed = escape(f"  [{k.allowed}]") if k.allowed else ""
        out.print(f"{mark} [bold]{k.key}[/]: {k.type} = {escape(json.dumps(k.default))}{allowed}", highlight=False)
        if k.description:
            out.print(f"      {k.description}", highlight=False, markup=False)
    return 0


@command("config", "show every config key with its type, default and allowed values", cmd_config,
         description="Show every key of the run configuration, generated from the schema: type, default, allowed "
         "values and what it does. With a recipe (and overrides), show its resolved values instead, the keys "
         "it changes in bold; the recipe is validated as `audioclf train` would.",
         examples=("audioclf config show", "audioclf config show configs/esc50/cnn14.yaml data.fold=2",
                   "audioclf config show --json | jq '.[] | select(.key | startswith(\"optim.\"))'"))
def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("show",), help="what to do: show (the only action)")
    p.add_argument("recipe", nargs="?", help="YAML recipe to resolve (omit for the defaults)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides applied to the recipe")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_resume(args: argparse.Namespace) -> int:
    from audioclf.training.trainer import load_resume_config, train

    config = load_resume_config(args.run, [*_global_overrides(args), *args.overrides])
    res = train(config)
    if res.rank:  # under DDP: rank 0 reports
        return 0
    if res.test_metrics:
        out.print(metrics_table(res.test_metrics, "test (best checkpoint)"))
    out.print(f"run directory: {res.run_dir}\nsteps: {res.global_step}\nbest checkpoint: {res.best_checkpoint}\ntime: {res.seconds:.1f} s")
    return 0


@command("resume", "continue a stopped run from its last checkpoint (its own config.yaml)", cmd_resume, trains=True,
         description="Continue a stopped or killed run from its last checkpoint, with the run's own "
         "config.yaml; mid-epoch checkpoints continue with the batches not yet trained on.",
         examples=("audioclf resume runs/esc50-cnn14-20261201-101500",
                   "audioclf resume runs/esc50-cnn14-20261201-101500 trainer.max_epochs=60   # train longer"))
def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (continues from checkpoints/last.ckpt) or a checkpoint in one")
    p.add_argument("overrides", nargs="*", help="key.path=value, e.g. trainer.max_epochs=20 to train longer")


def cmd_cv(args: argparse.Namespace) -> int:
    from audioclf.training.cv import cross_validate
    from audioclf.training.defaults import load_train_config

    config, _ = load_train_config(args.config, [*_global_overrides(args), *args.overrides])
    res = cross_validate(config, folds=args.folds, cv_dir=args.cv_dir)
    from audioclf.training.distributed import launch_rank_is_zero

    if not launch_rank_is_zero():  # under DDP: rank 0 reports
        return 0
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


@command("cv", "cross-validate a recipe over the store's official folds (a fresh model per fold)", cmd_cv, trains=True,
         description="Cross-validate a recipe over the store's official folds (ESC-50: 5, UrbanSound8K: 10): "
         "one fresh model per test fold, then the mean and standard deviation.",
         examples=("audioclf cv configs/esc50/cnn14.yaml",
                   "audioclf cv configs/esc50/cnn14.yaml --folds 1 2 trainer.max_epochs=5",
                   "audioclf cv configs/esc50/cnn14.yaml --cv-dir runs/cv-esc50-20261201-101500   # finish it"))
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
    from audioclf.inference.evaluate import default_evaluation_path, evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint, args.store, split=args.split, fold=args.fold, batch_size=args.batch_size,
        num_workers=args.workers, per_class=True, device=args.device or "cpu",
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


@command("evaluate", "score a checkpoint on a store split or fold", cmd_evaluate,
         description="Score a checkpoint on a store's split or fold: summary metrics, per-class figures and "
         "the confusion matrix, written as JSON (the report reads it).",
         examples=("audioclf evaluate runs/demo-*/checkpoints/best.ckpt audioclf-demo/synthetic.h5",
                   "audioclf evaluate best.ckpt esc50.h5 --fold 1 --plots figures/"))
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="audioclf checkpoint (e.g. runs/NAME/checkpoints/best.ckpt)")
    p.add_argument("store", help="packed store to evaluate on (from `audioclf prepare`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", default="test", help="named split (default: test)")
    g.add_argument("--fold", type=int, help="evaluate on this fold instead of a split")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (default 32)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0: in this process)")
    p.add_argument("--output", help="metrics JSON (default: <run>/evaluation.json for a checkpoint in a run, "
                   "else <checkpoint name>.evaluation.json beside it)")
    p.add_argument("--plots", metavar="DIR", help="also write the confusion matrix (single-label) and per-class "
                   "F1 or AP bars as PNG files to DIR")


def _predict_timeline(clf: Any, args: argparse.Namespace) -> int:
    """``predict --timeline``: frame-wise scores per file, written to --out, events printed."""
    from audioclf.text import plural

    if args.out and len(args.files) > 1:
        raise ConfigError("--out names one output file; give one audio file with it (or leave --out out)")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--out {args.out}: a timeline is written as .csv or .json")
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
        out.print(f"[bold]{f}[/]  {tl.duration:.2f} s, {plural(len(tl.starts), 'window')} of {tl.window:g} s every {tl.hop:g} s")
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

    clf = Classifier.from_pretrained(args.checkpoint, model=args.model, offline=args.offline, device=args.device or "cpu")
    if args.timeline:
        return _predict_timeline(clf, args)
    if args.out or args.window or args.hop:
        raise ConfigError("--out, --window and --hop go with --timeline")
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


@command("predict", "label audio files with a trained checkpoint or published weights", cmd_predict,
         description="Label audio files (any format soundfile reads) with a checkpoint or published weights: the "
         "best labels of each file, or with --timeline window-by-window scores and events for long recordings.",
         examples=("audioclf predict panns-cnn14 clip.wav                  # published AudioSet weights",
                   "audioclf predict runs/demo-*/checkpoints/best.ckpt dog.wav street.flac",
                   "audioclf predict best.ckpt recording.wav --timeline --out scores.csv"))
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    p.add_argument("files", nargs="+", help="audio files to label")
    add_model_source_args(p)
    p.add_argument("--top-k", type=int, default=5, help="labels shown per file, best first (default 5)")
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

    _check_quantize_args(args)
    res = export_checkpoint(  # onnx / onnxruntime missing: MissingDependencyError says what to install
        args.checkpoint, args.out, format=args.format, frontend=args.frontend, opset=args.opset,
        verify=not args.no_verify, model=args.model, offline=args.offline,
    )
    for path in res.paths:
        out.print(f"written: {path}")
    if res.max_abs_diff is not None:
        out.print(f"parity with PyTorch on synthetic audio: max |diff| {res.max_abs_diff:.2g}")
    if res.frontend_path is not None:
        out.print(f"run {res.frontend_path.name} on the waveform first and feed its output to {res.model_path.name}")
    if args.quantize == "int8":
        from audioclf.inference.onnx_runtime import quantize_export

        path, fig = quantize_export(res.model_path, args.calibration, clips=args.calibration_clips)
        out.print(f"written: {path} (int8, static, calibrated on {args.calibration_clips} clips of {args.calibration})")
        overlap = next(k for k in fig if k.endswith("_overlap"))
        out.print(f"int8 vs float on {fig['clips']} clips of the store: top-1 agreement {fig['top1_agreement']:.3f}, "
                  f"{overlap.replace('_', ' ')} {fig[overlap]:.3f}")
    return 0


def _check_quantize_args(args: argparse.Namespace) -> None:
    if args.quantize and (args.format != "onnx" or args.frontend != "inside"):
        raise ConfigError("--quantize int8 needs --format onnx with --frontend inside")
    if args.quantize and not args.calibration:
        raise ConfigError("--quantize int8 needs --calibration STORE (the training store, for activation ranges)")
    if args.calibration_clips < 1:
        raise ConfigError(f"--calibration-clips must be at least 1, got {args.calibration_clips}")


@command("export", "export a checkpoint to ONNX or TorchScript (checked against PyTorch)", cmd_export,
         description="Export a checkpoint to ONNX or TorchScript and check the exported file against PyTorch "
         "on synthetic audio.",
         examples=("audioclf export runs/demo-*/checkpoints/best.ckpt",
                   "audioclf export best.ckpt --format torchscript --out model.pt",
                   "audioclf export best.ckpt --frontend separate   # model.onnx + model.frontend.onnx",
                   "audioclf export best.ckpt --out m.onnx --quantize int8 --calibration data/esc50.h5   # + m.int8.onnx"))
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    add_model_source_args(p)
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="output format (default: onnx)")
    p.add_argument("--out", help="output file (default: the checkpoint's path with .onnx or .pt)")
    p.add_argument("--frontend", choices=("inside", "separate"), default="inside",
                   help="inside: waveform -> logits in one file (default); separate: also <out>.frontend.* "
                   "mapping waveform -> features, and the main file takes features")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--no-verify", action="store_true", help="skip running the exported file against PyTorch")
    p.add_argument("--quantize", choices=("int8",), help="also write <out>.int8.onnx: static int8, calibrated on --calibration")
    p.add_argument("--calibration", metavar="STORE", help="store whose training clips calibrate --quantize int8")
    p.add_argument("--calibration-clips", type=int, default=64, help="clips used for calibration (default 64)")


def cmd_info(args: argparse.Namespace) -> int:
    from audioclf.data.store import Store

    s = Store(args.store)
    out.print_json(json.dumps(s.summary()))
    return 0


@command("info", "describe a packed store", cmd_info,
         description="Describe a packed store: clips, classes, splits and folds, sample rate, provenance.",
         examples=("audioclf info audioclf-demo/synthetic.h5", "audioclf info data/esc50/esc50.h5 | jq .splits"))
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store file (.h5) or shard directory")


def cmd_verify(args: argparse.Namespace) -> int:
    from audioclf.data.store import verify_store_isolated

    report = verify_store_isolated(args.store)  # a crash of libhdf5 on a damaged file is reported, not fatal
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

    path = write_report(
        args.target, args.out, args.audio, plots_dir=args.plots, store=args.store, split=args.split,
        fold=args.fold, rows=args.rows, title=args.title, model=args.model, offline=args.offline, force=args.force,
    )
    out.print(f"report written to {path}")
    if args.out is None and path.name != "report.html":
        out.print(f"  ({path.with_name('report.html')} is kept: pass --force to replace it)")
    if args.plots:
        out.print(f"figures written to {args.plots}")
    return 0


@command("report", "write a self-contained HTML report of a run (and of an audio file, with a playhead)", cmd_report,
         description="Write a self-contained HTML report of a run: metrics per split, training curves, "
         "per-class figures and confusion matrix (evaluated on the run's store, named in its config.yaml), and "
         "for an audio file its spectrogram with a playhead and the prediction timeline. An existing report "
         "is not overwritten unless --force is given.",
         examples=("audioclf report runs/demo-20261201-101500",
                   "audioclf report runs/demo-20261201-101500 street.wav --out street.html",
                   "audioclf report runs/demo-20261201-101500 --force --plots figures/"))
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="run directory or checkpoint (or any model source: a published file, a catalog "
                   "name, hf:ORG/REPO)")
    add_model_source_args(p)
    p.add_argument("audio", nargs="?", help="audio file to show with its spectrogram, playhead and prediction timeline")
    p.add_argument("--out", help="HTML file (default: <run>/report.html)")
    p.add_argument("--store", help="evaluate the checkpoint on this store for per-class figures "
                   "(default: the run's evaluation.json when present, else the store in its config.yaml)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", default="test", help="store split for --store (default: test)")
    g.add_argument("--fold", type=int, help="store fold for --store instead of a split")
    p.add_argument("--rows", type=int, default=6, help="classes shown in the timeline (default 6)")
    p.add_argument("--plots", metavar="DIR", help="also write the figures as PNG files to DIR")
    p.add_argument("--title", help="page title")
    p.add_argument("--force", action="store_true", help="replace an existing report (default: keep it; the new "
                   "one is written as report-2.html, or --out is refused)")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from audioclf.serve import ServiceSettings, serve
    except ImportError as err:
        raise MissingDependencyError(f"audioclf serve needs FastAPI and uvicorn ({err.name} is missing): "
                         "pip install fastapi uvicorn python-multipart") from err

    settings = ServiceSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_seconds=args.max_seconds, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, max_decoded_samples=args.max_decoded_samples,
        decode_workers=args.decode_workers, request_timeout=args.request_timeout, max_connections=args.max_connections,
    )
    console.print(f"serving {args.checkpoint} on http://{args.host}:{args.port}  (API docs: /docs, page: /)")
    serve(args.checkpoint, args.host, args.port, settings, device=args.device or "cpu",
          log_level="debug" if args.verbose > 1 else "info", model=args.model, offline=args.offline)
    return 0


@command("serve", "serve a checkpoint over HTTP (POST /predict, POST /timeline, a player page at /)", cmd_serve,
         description="Serve a checkpoint over HTTP: POST /predict and POST /timeline take an audio file; / is a "
         "page with a player; /docs describes the API. Uploads, decoded length and batch size are bounded.",
         examples=("audioclf serve runs/demo-*/checkpoints/best.ckpt          # http://127.0.0.1:8000",
                   "audioclf serve best.ckpt --host 0.0.0.0 --port 9000 --device cuda",
                   "curl -F file=@dog.wav http://127.0.0.1:8000/predict"))
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_SOURCE_HELP)
    add_model_source_args(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted file, MiB (default 25)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest accepted audio, seconds (default 600)")
    p.add_argument("--max-batch", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its forward pass (default 5)")
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
    from audioclf.reporting.runs import locate_run, read_json

    check_repo_id(args.repo_id)  # before any conversion
    source = Path(args.source)
    if is_hub_dir(source):  # written earlier with --dir: upload it as it is
        if args.dir:
            raise ConfigError(f"{source} is already a Hub-format directory; push it without --dir")
        url = push_to_hub(source, args.repo_id, private=args.private, revision=args.revision)
        out.print(f"pushed {source} to {args.repo_id}: {url}")
        return 0
    files = locate_run(source)
    if files.checkpoint is None:
        raise FileNotFoundError(f"{source}: no checkpoint to push (checkpoints/best.ckpt or last.ckpt)")
    metrics = read_json(files.metrics_json) if files.metrics_json else None
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
        raise ConfigError(f"--out {args.out}: embeddings are written as {', '.join(EMBEDDING_FORMATS)}")
    clf = Classifier.from_pretrained(args.model_source, model=args.model, offline=args.offline, device=args.device or "cpu")
    store = len(args.inputs) == 1 and Path(args.inputs[0]).suffix.lower() in (".h5", ".hdf5") or (
        len(args.inputs) == 1 and Path(args.inputs[0]).is_dir())
    if (args.split or args.fold is not None) and not store:
        raise ConfigError("--split and --fold select clips of a store; give one store (.h5 or a shard directory)")
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
    add_model_source_args(p)  # --device: the global option


def cmd_benchmark(args: argparse.Namespace) -> int:
    import datetime

    from audioclf.benchmark import machine, run_benchmark
    from audioclf.models import list_models

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {', '.join(unknown)}; see `audioclf models`")
    try:
        workers = [int(w) for w in args.read_workers.split(",")]
    except ValueError:
        raise ConfigError(f"--read-workers {args.read_workers!r}: expected counts separated by commas, e.g. 0,2") from None
    figures = run_benchmark(models, clips=args.clips, epochs=args.epochs, batches=args.batches,
                            full_epochs=args.full_epochs, read_workers=workers, repeats=args.repeats)
    if args.reference:
        from audioclf.benchmark import bench_reference_panns

        bench_reference_panns(args.reference, figures)
    title = f"`audioclf benchmark --models {','.join(models)}` ({datetime.date.today()}, {machine()})"
    table = figures.markdown(title)
    out.print(table)
    if args.append:
        path = Path(args.append)
        with path.open("a") as f:
            f.write("\n" + table)
        out.print(f"appended to {path}")
    return 0


@command("benchmark", "measure prepare, store reads, training and inference speed on this machine", cmd_benchmark,
         trains=True,
         description="Measure, for the chosen models: prepare speed (generated folder dataset -> store), store read "
         "clips/s by worker count, training clips/s of audioclf's loop and of a bare PyTorch loop over the same model "
         "and batches (and their ratio), and one-clip inference latency and real-time factor with PyTorch, ONNX "
         "Runtime and static int8. Prints a Markdown table.",
         examples=("audioclf benchmark                                   # cnn_lite, a few minutes",
                   "audioclf benchmark --models cnn_lite,eat_s --append benchmarks/RESULTS.md",
                   "audioclf benchmark --clips 3000 --full-epochs 30     # + the 30-epoch run and int8 accuracy",
                   "audioclf benchmark --reference ~/src/audioset_tagging_cnn   # CNN14 vs the PANNs code"))
def _benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="cnn_lite", help="comma-separated registered models (default cnn_lite)")
    p.add_argument("--clips", type=int, default=600, help="clips of the generated 10-class 1-s folder dataset (default 600)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each training comparison (default 2)")
    p.add_argument("--batches", type=int, default=10, help="training batches per epoch in the comparison (default 10)")
    p.add_argument("--full-epochs", type=int, default=0,
                   help="also train cnn_lite end to end for this many epochs and measure int8's accuracy change")
    p.add_argument("--read-workers", default="0,1", help="worker counts for the store-read figure (default 0,1)")
    p.add_argument("--repeats", type=int, default=1, help="alternating bare/audioclf training runs; best kept (default 1)")
    p.add_argument("--append", metavar="RESULTS_MD", help="also append the table to this Markdown file")
    p.add_argument("--reference", metavar="DIR", help="a checkout of qiuqiangkong/audioset_tagging_cnn (needs "
                   "torchlibrosa): also time its Cnn14 against audioclf's runtimes on a 10-s clip, same weights")


# --- entry point --------------------------------------------------------------------------


def _global_options(after_verb: bool) -> argparse.ArgumentParser:
    """-v, -q and --device, for the top-level parser and (as a parent) for every verb.

    After the verb they default to SUPPRESS, so that a verb's parser only sets what was
    given after it and never resets what was given before it (``audioclf -v predict``);
    ``-v`` after the verb counts into its own attribute and main() adds the two counts.
    """
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options (before or after the verb)")
    unset = argparse.SUPPRESS
    g.add_argument("-v", "--verbose", action="count", dest="verbose_after" if after_verb else "verbose",
                   default=unset if after_verb else 0, help="more log output (-vv: debug, and tracebacks on errors)")
    g.add_argument("-q", "--quiet", action="store_true", default=unset if after_verb else False,
                   help="only warnings and errors: no info lines, no progress bars")
    g.add_argument("--device", default=unset if after_verb else None, metavar="DEVICE",
                   help="torch device for the model: cpu, cuda, cuda:1, mps (default: cpu; "
                   "for training verbs it sets trainer.accelerator/devices)")
    return p


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps one-paragraph descriptions to the terminal, keeps multi-line text (the
    examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def _epilog(examples: tuple[str, ...]) -> str | None:
    if not examples:
        return None
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


def build_parser() -> argparse.ArgumentParser:
    from audioclf import __version__

    parser = argparse.ArgumentParser(
        prog="audioclf", description="Train, evaluate and run audio classifiers.", parents=[_global_options(False)],
        formatter_class=_HelpFormatter,
        epilog=_epilog(("audioclf demo                      # the whole path offline, in about a minute",
                        "audioclf COMMAND --help            # what a command takes, with examples",
                        "audioclf config show               # every config key: type, default, allowed values")),
    )
    parser.add_argument("--version", action="version", version=f"audioclf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, verb in _COMMANDS.items():
        sp = sub.add_parser(name, help=verb.help, description=verb.description, epilog=_epilog(verb.examples),
                            parents=[_global_options(True)], formatter_class=_HelpFormatter,
                            conflict_handler="resolve")  # a verb may define its own -q or --device
        # (a parent of its own each: resolving a conflict edits the parent's actions)
        verb.add_args(sp)
    return parser


# What a user can fix, printed as one line with exit 2: AudioclfError (the library raises
# it for a bad config, file, checkpoint or argument, naming it), and the operating system's
# answer about a path the user gave. Anything else (ValueError, TypeError, KeyError, ...)
# is a bug in audioclf: it keeps its traceback, and the interpreter exits with status 1.
_USER_ERRORS = (AudioclfError, FileNotFoundError, FileExistsError,
                PermissionError, IsADirectoryError, NotADirectoryError)


def _unknown_verb(argv: list[str]) -> str | None:
    """The message for an unknown verb, with a "did you mean" (None if the verb is known
    or absent: argparse then reports what is wrong)."""
    from audioclf.text import did_you_mean

    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--device":
            i += 2
            continue
        if tok.startswith("-"):
            if tok in ("-h", "--help", "--version"):
                return None
            i += 1
            continue
        if tok in _COMMANDS:
            return None
        return (f"unknown command {tok!r};{did_you_mean(tok, _COMMANDS)} "
                f"commands: {', '.join(sorted(_COMMANDS))} (audioclf --help describes them)")
    return None


def _global_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides from the global options, for the verbs that train (given first,
    so overrides on the command line still win)."""
    extra = []
    device = getattr(args, "device", None)
    if device:
        kind, _, index = str(device).partition(":")
        accelerator = {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "mps": "mps"}.get(kind)
        if accelerator is None:
            raise ConfigError(f"--device {device}: expected cpu, cuda, cuda:N or mps")
        extra.append(f"trainer.accelerator={accelerator}")
        if index:
            extra.append(f"trainer.devices='{int(index)},'")  # Lightning: "1," is device index 1
    if getattr(args, "quiet", False):
        extra.append("trainer.progress_bar=false")
    return extra


def main(argv: list[str] | None = None) -> int:
    global _QUIET
    parser = build_parser()
    unknown = _unknown_verb(list(sys.argv[1:] if argv is None else argv))
    if unknown is not None:
        console.print(f"[bold red]error:[/] {unknown}", highlight=False)
        return 2
    args = parser.parse_args(argv)
    args.verbose += getattr(args, "verbose_after", 0)  # -v before and after the verb add up
    _QUIET = bool(args.quiet)
    verb = _COMMANDS.get(args.command)
    _setup_logging(args.verbose, verb.trains, args.quiet)
    try:
        return verb.run(args)
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
