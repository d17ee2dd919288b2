"""The hyperparameter search in a report: the trials table and their plot.

Reads ``trials.json`` (written by ``audioclf tune``, see ``training/tune.py``) in a tune
directory; the report of such a directory shows the section (``audioclf report DIR``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from audioclf.reporting.runs import read_json

TRIALS_FILE = "trials.json"


def read_trials(run_dir: Path | None) -> dict[str, Any] | None:
    path = run_dir / TRIALS_FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    return read_json(path)


def plot_trials(doc: dict[str, Any]) -> Any:
    """Left: each trial's score by trial number (completed as dots, pruned as crosses at
    their last reported value, failed left out) and the best so far. Then one panel per
    numeric searched setting: score against its value (log axis for wide ranges)."""
    from audioclf.reporting.plots import _figure

    trials = [t for t in doc["trials"] if t.get("value") is not None and t["state"] in ("complete", "pruned")]
    numeric = [k for k in doc.get("params", []) if any(isinstance(t["params"].get(k), (int, float))
                                                        and not isinstance(t["params"].get(k), bool) for t in trials)]
    panels = 1 + min(len(numeric), 3)
    fig = _figure(4.2 * panels, 3.4)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    for state, marker in (("complete", "o"), ("pruned", "x")):
        pts = [(t["number"], t["value"]) for t in trials if t["state"] == state]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=state, s=24)
    best, line = -math.inf, []
    for t in sorted((t for t in trials if t["state"] == "complete"), key=lambda t: t["number"]):
        best = max(best, t["value"])
        line.append((t["number"], best))
    if line:
        ax.step(*zip(*line, strict=True), where="post", color="0.3", linewidth=1, label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(doc.get("metric", "score"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax, key in zip(axes[1:], numeric, strict=False):
        pts = [(t["params"][key], t["value"], t["state"]) for t in trials if isinstance(t["params"].get(key), (int, float))]
        for state, marker in (("complete", "o"), ("pruned", "x")):
            sel = [(x, y) for x, y, s in pts if s == state]
            if sel:
                ax.scatter(*zip(*sel, strict=True), marker=marker, s=24)
        xs = [x for x, _, _ in pts]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle("hyperparameter search (scores on validation data)")
    return fig


def tuning_section(run_dir: Path | None, figures: dict[str, bytes] | None = None) -> str:
    """The report section of a tune directory ("" elsewhere): best trial, the plot, the
    table of every trial and the best recipe. ``figures`` receives the plot's PNG."""
    from audioclf.reporting.plots import figure_png
    from audioclf.reporting.report import esc, figure_img, section, table

    doc = read_trials(run_dir)
    if doc is None:
        return ""
    assert run_dir is not None
    keys = list(doc.get("params", []))
    rows = [(t["number"], t["state"], t.get("value"), t.get("steps"), t.get("seconds"), *(t["params"].get(k) for k in keys))
            for t in doc["trials"]]
    best = doc.get("best")
    intro = (f'<p class="muted">{len(doc["trials"])} trial(s); each scored by {esc(doc.get("metric", ""))} on '
             "validation data only: the test split or fold is never read during the search.</p>")
    if best:
        values = ", ".join(f"{esc(k)}={esc(v)}" for k, v in best["params"].items())
        intro += f"<p>best: trial {best['number']}, {esc(doc.get('metric', ''))} <b>{best['value']:.4f}</b> with {values}</p>"
    png = figure_png(plot_trials(doc)) if any(t.get("value") is not None for t in doc["trials"]) else None
    if png is not None and figures is not None:
        figures["trials"] = png
    body = intro + (figure_img(png, "trials") if png else "")
    body += f'<div class="scroll">{table(rows, ["trial", "state", doc.get("metric", "score"), "epochs", "seconds", *keys], numeric_from=2)}</div>'
    best_recipe = run_dir / "best.yaml"
    if best_recipe.is_file():
        body += f"<details><summary>best.yaml (audioclf train {esc(best_recipe)})</summary><pre>{esc(best_recipe.read_text())}</pre></details>"
    return section("Hyperparameter search", body, "tuning")
