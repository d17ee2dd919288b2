"""The HTML report of a run: one self-contained file, readable offline.

    write_report("runs/demo-20250101-120000", "report.html", audio="dog.wav")

Everything is inside the file: figures as PNG data URIs, the audio as a data URI, the
player script and the style inline; nothing is fetched from the network. The report
shows the run's figures (test metrics, last validation epoch, training curves,
per-class numbers and confusion matrix when an evaluation is available) and, for an
audio file, the spectrogram with a playhead that follows the audio player and the
prediction timeline under it (see ``assets/player.js``).
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audioclf.errors import CheckpointError, ConfigError
from audioclf.reporting import plots
from audioclf.reporting.player import (
    analyse_audio,
    audio_data_uri,
    data_uri,
    read_asset,
    script_json,
    timeline_payload,
)
from audioclf.reporting.runs import History, RunFiles, locate_run, read_history, read_json
from audioclf.reporting.tuning import tuning_section

if TYPE_CHECKING:
    from audioclf.inference.classifier import Classifier

log = logging.getLogger(__name__)

# A report shows at most this many classes' scores for an audio file (the player draws
# the best few of them); keeps the page small for 527-class AudioSet models.
REPORT_MAX_CLASSES = 50


@dataclass
class Report:
    """A rendered report: the page, and the figures in it as PNG bytes by name."""

    html: str
    figures: dict[str, bytes] = field(default_factory=dict)

    def write(self, path: str | Path) -> Path:
        path = _html_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def write_figures(self, directory: str | Path) -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, png in self.figures.items():
            (directory / f"{name}.png").write_bytes(png)
            written.append(directory / f"{name}.png")
        return written


def _html_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give the path of the HTML file to write (e.g. {path / 'report.html'})")
    return path


# --- small HTML builders ------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def table(rows: Iterable[Iterable[Any]], header: Iterable[str] | None = None, numeric_from: int = 1) -> str:
    """An HTML table; cells from column ``numeric_from`` on are right-aligned numbers."""

    def cells(row: Iterable[Any], tag: str) -> str:
        return "".join(
            f'<{tag}{" class=num" if i >= numeric_from else ""}>{esc(fmt(v))}</{tag}>' for i, v in enumerate(row)
        )

    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>" if header else ""
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def scalar_rows(metrics: Mapping[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, Any]]:
    """The single numbers (and short strings) of a metrics dict, in its order."""
    skip = set(skip)
    return [(k, v) for k, v in metrics.items() if k not in skip and isinstance(v, (int, float, str)) and not isinstance(v, bool)]


def figure_img(png: bytes, alt: str) -> str:
    return f'<img class="figure" alt="{esc(alt)}" src="{data_uri(png, "image/png")}">'


def section(title: str, body: str, ident: str) -> str:
    return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>{body}</section>'


# --- the parts of a report ----------------------------------------------------------------


@dataclass
class _Context:
    """What the sections are built from; filled step by step by ``build_report``."""

    files: RunFiles
    info: dict[str, Any] = field(default_factory=dict)
    history: History | None = None
    test_metrics: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    figures: dict[str, bytes] = field(default_factory=dict)
    classifier: Classifier | None = None  # the checkpoint's model, loaded once when it is needed
    evaluation_is_test: bool = False  # the evaluation is of the run's own test split or fold


def _summary_section(ctx: _Context) -> str:
    f, i = ctx.files, ctx.info
    rows: list[tuple[str, Any]] = [("run directory", str(f.run_dir) if f.run_dir else "–"),
                                   ("checkpoint", str(f.checkpoint) if f.checkpoint else "–")]
    if i:
        rows += [
            ("model", i.get("model", "–")),
            ("task", i.get("task", "–")),
            ("classes", i.get("num_classes", len(i.get("label_names", [])))),
            ("sample rate", f"{i.get('sample_rate', '–')} Hz"),
            ("clip length", f"{int(i['clip_samples']) / int(i['sample_rate']):g} s" if i.get("clip_samples") and i.get("sample_rate") else "–"),
            ("weights", weights_label(i)),
        ]
    if ctx.history is not None:
        rows.append(("epochs logged", ctx.history.epochs))
    body = table(rows, numeric_from=99)
    if i.get("model_settings"):
        body += f"<h3>model settings</h3><pre>{esc(script_json(i['model_settings']))}</pre>"
    return section("Run", body, "run")


def weights_label(info: Mapping[str, Any]) -> str:
    """What the checkpoint's weights are, in words: the EMA of the training weights (with
    its decay) or the raw weights the optimiser left."""
    kind = info.get("weights")
    if kind == "ema":
        task = (info.get("config") or {}).get("task") or {}
        decay = task.get("ema_decay")
        unit = task.get("ema_unit", "step")
        return "EMA: exponential moving average of the training weights" + (f" (decay {decay:g} per {unit})" if decay else "")
    if kind == "model":
        return "raw: the optimiser's weights (no EMA)"
    return "–" if kind is None else str(kind)


def split_tables(
    test_metrics: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None, evaluation_is_test: bool = False
) -> list[tuple[str, str, Mapping[str, Any]]]:
    """One (split, source, metrics) per split: the run's test figures (metrics.json) and an
    evaluation of the same split are one table (the evaluation's, which is the fuller one).
    ``evaluation_is_test``: the evaluation is of the run's own test clips (its config's test
    split or fold), whatever its split is called (``fold 3``)."""
    tables: dict[str, tuple[str, Mapping[str, Any]]] = {}
    if test_metrics:
        tables[str(test_metrics.get("split") or "test")] = ("metrics.json: the best checkpoint, scored when training ended", test_metrics)
    if evaluation:
        named = str(evaluation.get("split") or "test")
        split = str((test_metrics or {}).get("split") or "test") if evaluation_is_test else named
        store = evaluation.get("store")
        source = f"evaluation of the checkpoint on {Path(str(store)).name}" if store else "evaluation.json"
        if split != named:
            source += f", {named} (the run's test clips)"
        tables[split] = (source, evaluation)
    return [(split, source, metrics) for split, (source, metrics) in tables.items()]


def _metrics_section(ctx: _Context) -> str:
    blocks = []
    for split, source, metrics in split_tables(ctx.test_metrics, ctx.evaluation, ctx.evaluation_is_test):
        rows = scalar_rows(metrics, ("checkpoint", "store", "split"))
        blocks.append(f'<div class="split-table"><h3>{esc(split)} split</h3><p class="muted source">{esc(source)}</p>'
                      f"{table(rows, ['metric', 'value'])}</div>")
    if ctx.history is not None:
        last = {k: v for k, v in ctx.history.last().items() if k.startswith("val/") or k.startswith("train/loss")}
        if last:
            rows = [(k, v) for k, v in sorted(last.items())]
            note = ""
            if plots.GAP_SERIES in last:
                note = ('<p class="muted">overfit_gap_pct: how much higher the validation loss is than the mean '
                        "training loss of the same epoch, in percent (negative: validation loss is lower).</p>")
            blocks.append(f"<div><h3>last validation epoch</h3>{table(rows, ['metric', 'value'])}{note}</div>")
    if not blocks:
        return section("Metrics", '<p class="muted">no metrics found (metrics.json, evaluation.json, metrics.csv)</p>', "metrics")
    return section("Metrics", f'<div class="tables">{"".join(blocks)}</div>', "metrics")


def _curves_section(ctx: _Context) -> str:
    if ctx.history is None:
        return ""
    try:
        fig = plots.plot_training_curves(ctx.history)
    except ValueError as err:
        return section("Training curves", f'<p class="muted">{esc(err)}</p>', "curves")
    ctx.figures["training_curves"] = plots.figure_png(fig)
    body = figure_img(ctx.figures["training_curves"], "training curves") + _overfit_gap_note(ctx)
    return section("Training curves", body, "curves")


def _overfit_gap_note(ctx: _Context) -> str:
    """What the overfit-gap curve measures and when it misleads (seed 003 asks whether the
    percentage difference of validation and training loss is a legitimate measure)."""
    if ctx.history is None or not ctx.history.has(plots.GAP_SERIES):
        return ""
    return (
        '<div class="note" id="overfit-gap-note"><h3>Reading the overfit gap</h3>'
        "<p>The gap is <code>100 &times; (validation loss &minus; mean training loss of the epoch) / training loss</code>: "
        "how much worse the model does, by its own loss, on clips it does not train on. A gap that keeps growing while "
        "the training loss falls is the usual picture of overfitting; read it beside the two loss curves, not alone.</p>"
        "<p>It misleads when the two losses are not measured alike, and they rarely are:</p><ul>"
        "<li><b>augmentation, mixing, label smoothing, dropout</b> make the training loss (on altered batches, in "
        "training mode) higher than the clean validation loss, so the gap can sit near zero or below it while the "
        "model overfits;</li>"
        "<li><b>it is a ratio</b>: as the training loss goes towards 0 the percentage explodes even when the "
        "validation loss is steady;</li>"
        "<li><b>the training loss is an average over an epoch</b> of changing weights, the validation loss is taken "
        "at its end (and with the EMA weights when the run keeps them);</li>"
        "<li><b>loss is not accuracy</b>: the validation loss can rise (confident mistakes) while the validation "
        "accuracy still improves;</li>"
        "<li><b>the gap is only as honest as the split</b>: when validation clips share speakers, recordings or "
        "conditions with training clips, a small gap says nothing about new ones (hold out by speaker or fold).</li>"
        "</ul><p>Choose checkpoints and settings by the validation metric (the run does), and judge generalisation "
        "on a held-out test split or fold.</p></div>"
    )


def _per_class_section(ctx: _Context) -> str:
    ev = ctx.evaluation
    if not ev or not ev.get("per_class"):
        hint = ("" if ctx.files.checkpoint is None else
                '<p class="muted">per-class figures and the confusion matrix come from an evaluation: run '
                "<code>audioclf evaluate CHECKPOINT STORE</code> (writes evaluation.json in the run directory) "
                "or pass <code>--store</code> to <code>audioclf report</code>.</p>")
        return section("Per class", hint, "per-class") if hint else ""
    per_class: dict[str, dict[str, Any]] = ev["per_class"]
    columns = list(next(iter(per_class.values())).keys())
    rows = [(name, *(vals.get(c) for c in columns)) for name, vals in per_class.items()]
    body = f'<div class="scroll">{table(rows, ["class", *columns])}</div>'
    for name, fig in plots.evaluation_figures(ev).items():
        ctx.figures[name] = plots.figure_png(fig)
        body += figure_img(ctx.figures[name], name.replace("_", " "))
    return section(f"Per class ({ev.get('split', '')})", body, "per-class")


def _config_section(ctx: _Context) -> str:
    if ctx.files.config is None:
        return ""
    text = ctx.files.config.read_text(encoding="utf-8", errors="replace")
    return section("Configuration", f"<details><summary>config.yaml</summary><pre>{esc(text)}</pre></details>", "config")


def _audio_section(ctx: _Context, audio: Path, rows: int) -> str:
    if ctx.classifier is None:
        raise CheckpointError(f"{ctx.files.run_dir}: no checkpoint (checkpoints/best.ckpt or last.ckpt) to label {audio} with")
    view = analyse_audio(ctx.classifier, audio)
    assert view.spectrogram is not None
    payload = timeline_payload(view.timeline, view.spectrogram, max_classes=REPORT_MAX_CLASSES)
    fig = plots.plot_timeline(view.spectrogram, view.timeline, top_k=rows, title=audio.name)
    ctx.figures["timeline"] = plots.figure_png(fig)
    top = "".join(f"<li>{esc(p['label'])} <b>{p['score']:.3f}</b></li>" for p in payload["top"])
    src = audio_data_uri(audio, view.wave, view.sample_rate)
    body = (
        f'<p class="muted">{esc(audio.name)} · {view.timeline.duration:.2f} s · windows of {view.timeline.window:g} s '
        f"every {view.timeline.hop:g} s · click the spectrogram or the timeline to seek</p>"
        f'<ul class="labels-list" id="top-labels">{top}</ul>'
        f'<audio id="acp-audio" class="acp-audio" controls preload="auto" src="{src}"></audio>'
        '<div id="player"></div>'
        f'<script type="application/json" id="acp-data">{script_json(payload)}</script>'
        f"<script>AudioclfPlayer.mount(document.getElementById('player'), document.getElementById('acp-audio'), "
        f"JSON.parse(document.getElementById('acp-data').textContent), {{rows: {int(rows)}}});</script>"
        f"<details><summary>static figure</summary>{figure_img(ctx.figures['timeline'], 'spectrogram and timeline')}</details>"
    )
    return section(f"Audio: {audio.name}", body, "audio")


def run_store(files: RunFiles) -> tuple[Path, str | None, int | None] | None:
    """The store a run trained on, from its config.yaml, with its test split or fold:
    ``(store, split, fold)``, or None when the config names none or the store is gone."""
    if files.config is None:
        return None
    import yaml

    try:
        data = (yaml.safe_load(files.config.read_text(encoding="utf-8")) or {}).get("data") or {}
    except (OSError, yaml.YAMLError, AttributeError) as err:
        log.warning("%s: not read (%s); the report has no evaluation", files.config, err)
        return None
    store = data.get("store")
    if not store:
        return None
    path = Path(store)
    if not path.is_absolute() and not path.exists() and files.run_dir is not None:
        path = files.run_dir / store  # unlikely, but a run copied with its data beside it
    if not path.exists():
        log.info("%s names store %s, which is not there: no evaluation in the report (pass --store)", files.config, store)
        return None
    fold = data.get("fold")
    test_split = data.get("test_split", "test")
    if fold is None and not isinstance(test_split, str):
        return None  # no test split (or several): nothing single to evaluate on
    log.info("evaluating %s on %s (%s, from %s) for the report", files.checkpoint, path,
             f"fold {fold}" if fold is not None else f"split {test_split!r}", files.config.name)
    return path, (None if fold is not None else test_split), fold


def build_report(
    target: str | Path,
    audio: str | Path | None = None,
    *,
    store: str | Path | None = None,
    split: str | None = "test",
    fold: int | None = None,
    rows: int = 6,
    title: str | None = None,
    model: str | None = None,
    offline: bool = False,
    evaluate: Callable[..., dict[str, Any]] | None = None,
) -> Report:
    """Render the report of ``target`` (a run directory or a checkpoint, or any model source:
    a published file, a catalog name, ``hf:ORG/REPO``; ``model``/``offline`` as for
    :func:`audioclf.models.pretrained.resolve_model`).

    ``audio``: a file to label, shown with the playhead player and the timeline of its
    ``rows`` best classes. ``store``: evaluate the checkpoint on this store's ``split``
    (or ``fold``) for per-class figures, with ``evaluate(model, info, store, split=...,
    fold=..., per_class=True) -> metrics`` (default:
    :func:`audioclf.inference.evaluate.evaluate_model`, imported only then); otherwise ``evaluation.json`` of the run is used
    when present, else the store named in the run's ``config.yaml`` (its test split or
    fold) when it is still there.
    """
    files = _locate(target)
    ctx = _Context(files)
    if store is None and files.evaluation_json is None and files.checkpoint is not None:
        own = run_store(files)
        if own is not None:
            store, split, fold = own
            ctx.evaluation_is_test = True
    source = files.checkpoint if files.checkpoint is not None else (target if files.run_dir is None else None)
    if store is not None and source is None:
        raise CheckpointError(f"{target}: no checkpoint to evaluate on {store}")
    if source is not None:
        from audioclf.models.bundle import read_bundle

        try:  # only the bundle info is needed unless the model runs
            ctx.info = {} if store is not None or audio is not None else read_bundle(source)[1]
        except (ValueError, FileNotFoundError):  # a published checkpoint or a named source: its info comes with the model
            ctx.info = {}
        if not ctx.info:  # the model is needed: read and build it once
            from audioclf.inference.classifier import Classifier

            ctx.classifier = Classifier.from_pretrained(source, model=model, offline=offline)
            ctx.info = ctx.classifier.info
    if files.metrics_csv is not None:
        ctx.history = read_history(files.metrics_csv)
    if files.metrics_json is not None:
        ctx.test_metrics = read_json(files.metrics_json)
    if store is not None:
        if evaluate is None:  # imported only when a store is scored: it loads torchmetrics
            from audioclf.inference.evaluate import evaluate_model as evaluate

        assert ctx.classifier is not None
        ctx.evaluation = evaluate(ctx.classifier.model, ctx.info, store, split=split, fold=fold, per_class=True)
        ctx.evaluation["store"] = str(store)
    elif files.evaluation_json is not None:
        ctx.evaluation = read_json(files.evaluation_json)

    builders: list[Callable[[], str]] = [
        lambda: _summary_section(ctx),
        lambda: _metrics_section(ctx),
        lambda: _curves_section(ctx),
        lambda: _per_class_section(ctx),
        lambda: tuning_section(files.run_dir, ctx.figures),
    ]
    if audio is not None:
        audio_path = Path(audio)
        builders.insert(1, lambda: _audio_section(ctx, audio_path, rows))
    builders.append(lambda: _config_section(ctx))
    body = "".join(b() for b in builders)
    from audioclf import __version__

    heading = title or f"audioclf report: {files.name}"
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(heading)}</title><style>{read_asset('style.css')}</style>"
        f"<script>{read_asset('player.js')}</script></head>"
        f"<body><main><header><h1>{esc(heading)}</h1>"
        f'<p>generated by audioclf {esc(__version__)} on {esc(time.strftime("%Y-%m-%d %H:%M"))}</p></header>'
        f"{body}</main></body></html>\n"
    )
    return Report(page, dict(ctx.figures))


def free_name(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``<stem>-2<suffix>``, ``-3``..."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def _locate(target: str | Path) -> RunFiles:
    """The run files of ``target``; a catalog name or Hub id has none."""
    from audioclf.models.pretrained import is_model_source_name

    if isinstance(target, str) and is_model_source_name(target):
        return RunFiles(None, None, None, None, None, None)
    if Path(target).is_dir() and (Path(target) / "config.json").is_file():  # a Hugging Face / Hub-format model
        return RunFiles(None, None, None, None, None, None)
    return locate_run(target)


def write_report(
    target: str | Path,
    out: str | Path | None = None,
    audio: str | Path | None = None,
    *,
    plots_dir: str | Path | None = None,
    force: bool = False,
    **options: Any,
) -> Path:
    """Build the report (see ``build_report``) and write it to ``out`` (default:
    ``<run>/report.html``, or beside the checkpoint); ``plots_dir`` also receives the
    figures as PNG files. Returns the path of the HTML file.

    An existing report is never replaced without ``force``: the default name moves on to
    ``report-2.html`` (and a warning says so); an ``out`` that exists is an error. A
    report can hold what a later one cannot (the audio player of a file, an evaluation).
    """
    if out is not None:
        out = _html_path(out)  # before the work, not after it
        if out.exists() and not force:
            raise FileExistsError(f"{out} exists: pass --force (force=True) to replace it, or choose another --out")
    report = build_report(target, audio, **options)
    if out is None:
        files = _locate(target)
        base = files.run_dir or (files.checkpoint.parent if files.checkpoint else Path("."))
        out = base / "report.html"
        if out.exists() and not force:
            kept, out = out, free_name(out)
            log.warning("%s exists and is kept (pass --force to replace it): writing %s", kept, out.name)
    path = report.write(out)
    log.debug("report written to %s", path)
    if plots_dir is not None:
        report.write_figures(plots_dir)
    return path
