"""Hyperparameter search over a recipe's ``tune:`` section, with Optuna.

A recipe declares its search space by dotted config paths::

    tune:
      optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}      # float (log scale)
      model.settings.dropout: {low: 0.0, high: 0.5}          # float
      data.batch_size: {low: 16, high: 64, step: 16}         # int (both ends integers)
      data.augment.pitch_shift.p: {choices: [0.0, 0.5]}      # one of a list
      optim.scheduler: {choices: [cosine, plateau]}

Every trial trains the recipe with its values through :func:`train` and is scored by the
recipe's own protocol on data it trains or validates on, never on the test split or fold:

- ``val`` (default): the best per-epoch validation figure (accuracy, or mAP for
  multi-label) of one run. Each epoch's figure is reported to Optuna, so the median
  pruner stops a trial that is worse than the median of earlier trials at that epoch.
- ``cv``: for a k-fold recipe (``data.fold`` is its test fold), one run per other fold
  as the validation fold, training on the rest; the score is the mean of their best
  validation figures. The test fold takes part in no trial.

The search lives in ``<output_dir>/<name>-tune/``: ``study.db`` (Optuna's SQLite storage,
written as each trial ends), ``recipe.yaml`` (what is searched), one run directory per
trial (``trial-0000/`` ...), ``trials.csv`` / ``trials.json`` (the table), ``best.yaml``
(the best config as a recipe ``audioclf train`` takes) and ``report.html``. Running the
same search again, or ``--resume DIR``, continues it: finished trials are kept, a trial
that was cut off (the process killed) is run again with its values.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from pydantic import BaseModel

from audioclf.config import Config, validate_config
from audioclf.errors import ConfigError, MissingDependencyError
from audioclf.training.defaults import load_train_config, read_recipe_file

log = logging.getLogger(__name__)

PROTOCOLS = ("val", "cv")
# Keys that define the data and the protocol: searching them would change what is
# measured (or measure on the test data).
PROTOCOL_KEYS = (
    "data.store", "data.fold", "data.val_fold", "data.val_fraction", "data.train_split", "data.val_split",
    "data.test_split", "trainer.resume", "name", "output_dir", "recipe",
)
# Fields that hold free-form mappings: keys below them are checked when training builds them.
_OPEN_FIELDS = {"settings", "augment", "spec_augment", "methods", "layer_lr"}


@dataclass(frozen=True)
class SearchParam:
    """One searched setting: a float or int range, or a list of choices."""

    key: str
    kind: str  # "float" | "int" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def samples(self) -> list[Any]:
        """Values that show the range is usable (the ends, or every choice)."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _check_schema_key(key: str) -> None:
    """``key`` names a setting of :class:`Config` (anything below an open mapping goes)."""
    model: type[BaseModel] = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"tune.{key}: {part!r} is not a setting of {where}; allowed: {', '.join(sorted(fields))}")
        if part in _OPEN_FIELDS:
            return
        ann = fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif i < len(parts) - 1:
            raise ConfigError(f"tune.{key}: {'.'.join(parts[: i + 1])} is a value, not a section")
    if isinstance(fields[parts[-1]].annotation, type) and issubclass(fields[parts[-1]].annotation, BaseModel):
        raise ConfigError(f"tune.{key}: is a section; search one of its settings")


def parse_search_space(section: Any, base: dict[str, Any]) -> list[SearchParam]:
    """The ``tune:`` section -> its parameters, each checked against the schema and with
    its end values (or choices) tried on ``base`` (the recipe without ``tune:``). Errors
    name the key."""
    if not isinstance(section, dict) or not section:
        raise ConfigError("tune: must be a mapping of dotted config keys to {low, high[, log, step]} or {choices: [...]}")
    params = []
    for key, spec in section.items():
        key = str(key)
        if key in PROTOCOL_KEYS or key.startswith("trainer.resume"):
            raise ConfigError(f"tune.{key}: defines the data or the protocol and cannot be searched")
        _check_schema_key(key)
        if not isinstance(spec, dict):
            raise ConfigError(f"tune.{key}: expected {{low, high[, log, step]}} or {{choices: [...]}}, got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise ConfigError(f"tune.{key}: unknown option(s) {', '.join(sorted(unknown))}; allowed: low, high, log, step, choices")
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise ConfigError(f"tune.{key}: choices go alone (no low/high/log/step with them)")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"tune.{key}: choices must be a non-empty list, got {choices!r}")
            if any(isinstance(c, (dict, list)) for c in choices):
                raise ConfigError(f"tune.{key}: choices must be single values (numbers, strings, true/false, null)")
            param = SearchParam(key, "choice", choices=tuple(choices))
        else:
            if "low" not in spec or "high" not in spec:
                raise ConfigError(f"tune.{key}: a range needs both low and high (or give choices: [...])")
            low, high = spec["low"], spec["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise ConfigError(f"tune.{key}: low and high must be numbers, got {low!r} and {high!r}")
            if not low < high:
                raise ConfigError(f"tune.{key}: low ({low}) must be below high ({high})")
            log_scale = spec.get("log", False)
            if not isinstance(log_scale, bool):
                raise ConfigError(f"tune.{key}: log must be true or false, got {log_scale!r}")
            if log_scale and low <= 0:
                raise ConfigError(f"tune.{key}: a log range needs low > 0, got {low}")
            step = spec.get("step")
            if step is not None and (not isinstance(step, (int, float)) or step <= 0):
                raise ConfigError(f"tune.{key}: step must be a positive number, got {step!r}")
            if step is not None and log_scale:
                raise ConfigError(f"tune.{key}: step and log cannot go together")
            is_int = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
            param = SearchParam(key, "int" if is_int else "float", low, high, log_scale, step)
        for value in param.samples():
            try:
                validate_config(set_dotted(copy.deepcopy(base), key, value) | {"recipe": "none"}, source="tune")
            except ConfigError as err:
                raise ConfigError(f"tune.{key}: the value {value!r} does not make a valid config:\n{err}") from None
        params.append(param)
    return params


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set ``a.b.c`` in the nested dict ``raw`` (in place; sections are created) and return it."""
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value
    return raw


# --- scoring --------------------------------------------------------------------------


class ValidationReporter(L.Callback):
    """Reports each epoch's validation figure to an Optuna trial (at ``offset + epoch``)
    and stops the run when the trial's pruner says so. Keeps the best figure seen."""

    def __init__(self, trial: Any, monitor: str, offset: int = 0, prune: bool = True) -> None:
        self.trial, self.monitor, self.offset, self.prune = trial, monitor, offset, prune
        self.best = -math.inf
        self.reports = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if math.isnan(value):
            return
        self.best = max(self.best, value)
        self.trial.report(value, self.offset + trainer.current_epoch)
        self.reports += 1
        if self.prune and self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"epoch {trainer.current_epoch + 1}: {self.monitor} {value:.4f}")


def _validation_folds(config: Config, limit: int | None) -> list[int]:
    from audioclf.data.store import Store

    if config.data.fold is None:
        raise ConfigError("tune --protocol cv needs a k-fold recipe: set data.fold (the test fold, kept out of every trial)")
    store = Store(str(config.data.store))
    folds = [f for f in store.fold_ids() if f != config.data.fold]
    store.close()
    if not folds:
        raise ConfigError(f"{config.data.store}: no folds besides the test fold {config.data.fold} to validate on")
    return folds[:limit] if limit else folds


def score_trial(
    config: Config, trial: Any, run_root: Path, protocol: str = "val", cv_folds: int | None = None, prune: bool = True
) -> float:
    """Train ``config`` as one trial and return its score (higher is better); never reads
    the test split or fold."""
    from audioclf.data.store import Store
    from audioclf.training.metrics import monitor_metric
    from audioclf.training.trainer import train

    store = Store(str(config.data.store))
    monitor = monitor_metric(store.multi_label)
    store.close()
    if protocol == "val":
        runs = [(config, run_root)]
    elif protocol == "cv":
        runs = []
        for j in _validation_folds(config, cv_folds):
            raw = config.to_dict()
            raw["data"]["val_fold"] = j
            runs.append((validate_config(raw, source=f"trial fold {j}"), run_root / f"val-fold-{j:02d}"))
    else:
        raise ConfigError(f"tune: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    scores = []
    for i, (cfg, run_dir) in enumerate(runs):
        reporter = ValidationReporter(trial, monitor, offset=i * cfg.trainer.max_epochs, prune=prune)
        train(cfg, run_dir=run_dir, callbacks=[reporter], test=False)
        if reporter.reports == 0:
            raise ConfigError(
                f"trial {trial.number}: no validation figure ({monitor}) was logged: the recipe needs a validation "
                "set (data.val_split, data.val_fraction)"
            )
        scores.append(reporter.best)
    return sum(scores) / len(scores)


# --- the search -----------------------------------------------------------------------


@dataclass
class TuneResult:
    tune_dir: Path
    metric: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_recipe: Path | None = None
    report: Path | None = None


def tune_dir_for(raw: dict[str, Any], name: str | None) -> Path:
    defaults = Config()
    return Path(raw.get("output_dir", defaults.output_dir)) / f"{name or raw.get('name', defaults.name)}-tune"


def tune(
    recipe: str | Path | None,
    trials: int,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    resume: str | Path | None = None,
    protocol: str = "val",
    cv_folds: int | None = None,
    prune: bool = True,
    seed: int | None = None,
    timeout: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Run (or continue) the search of ``recipe``'s ``tune:`` section until ``trials``
    trials have finished (completed or pruned). ``resume``: a tune directory to continue
    with its own ``recipe.yaml``. ``progress(row)`` is called after each trial."""
    try:
        import optuna
    except ImportError as err:
        raise MissingDependencyError("audioclf tune needs Optuna: pip install 'audioclf[tune]' (or pip install optuna)") from err

    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"tune: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if resume is not None:
        tune_dir = Path(resume)
        saved = tune_dir / "recipe.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {tune_dir}: no recipe.yaml there (not an audioclf tune directory)")
        if recipe is not None or overrides:
            raise ConfigError("--resume continues a search with its own recipe.yaml: give no recipe or overrides with it")
        user = read_recipe_file(saved)
        meta = json.loads((tune_dir / "tune.json").read_text()) if (tune_dir / "tune.json").is_file() else {}
        protocol, cv_folds = meta.get("protocol", protocol), meta.get("cv_folds", cv_folds)
    else:
        user = read_recipe_file(recipe)
        from audioclf.config import apply_overrides

        apply_overrides(user, list(overrides or []))
        tune_dir = tune_dir_for(user, name)
    section = user.pop("tune", None)
    if section is None:
        raise ConfigError(f"{recipe or tune_dir / 'recipe.yaml'}: no tune: section to search (see docs/training.md)")
    base_config, _ = load_train_config(raw=user, announce=False)  # the recipe itself must be valid
    if not base_config.data.store:
        raise ConfigError("data.store is not set: the recipe must name the store the trials train on")
    if base_config.trainer.resume:
        raise ConfigError("trainer.resume continues one run; a search starts its trials afresh")
    params = parse_search_space(section, user)
    if protocol == "cv":
        _validation_folds(base_config, cv_folds)
    elif base_config.data.fold is None and base_config.data.val_split is None:
        raise ConfigError("tune scores trials on validation data: the recipe sets data.val_split=null (use a split or data.fold)")

    recipe_doc = {**user, "tune": section}
    _check_same_search(tune_dir, recipe_doc, protocol, cv_folds)
    tune_dir.mkdir(parents=True, exist_ok=True)
    (tune_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_doc, sort_keys=False))
    (tune_dir / "tune.json").write_text(json.dumps({"protocol": protocol, "cv_folds": cv_folds}))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(tune_dir / 'study.db').resolve()}")
    try:  # a continued search draws on from a seed of its own, not the first run's values again
        earlier = len(optuna.load_study(study_name="audioclf", storage=storage).trials)
    except KeyError:
        earlier = 0
    study = optuna.create_study(
        study_name="audioclf", storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=(base_config.seed if seed is None else seed) + earlier),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if prune else optuna.pruners.NopPruner(),
    )
    _requeue_cut_off(study, tune_dir)
    from audioclf.training.metrics import monitor_metric

    metric = monitor_metric(_multi_label(str(base_config.data.store)))
    result = TuneResult(tune_dir, metric)

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        raw = copy.deepcopy(user)
        for key, value in values.items():
            set_dotted(raw, key, value)
        raw["name"] = f"{base_config.name}-trial{trial.number:04d}"
        config, _ = load_train_config(raw=raw, announce=False)
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in values.items()))
        return score_trial(config, trial, tune_dir / f"trial-{trial.number:04d}", protocol, cv_folds, prune)

    def after(study: Any, frozen: Any) -> None:
        rows = write_tables(study, tune_dir, metric)
        write_best_recipe(study, user, tune_dir, metric, protocol, recipe)
        if progress is not None and rows:
            progress(next((r for r in rows if r["number"] == frozen.number), rows[-1]))

    done = _finished(study)
    if done < trials:
        log.info("tune: %d of %d trials finished in %s; running %d more", done, trials, tune_dir, trials - done)
        study.optimize(objective, n_trials=trials - done, timeout=timeout, callbacks=[after], gc_after_trial=True)
    else:
        log.info("tune: %d trials already finished in %s", done, tune_dir)
    result.trials = write_tables(study, tune_dir, metric)
    result.best_recipe = write_best_recipe(study, user, tune_dir, metric, protocol, recipe)
    if result.best_recipe is not None:
        result.best_value, result.best_params = study.best_value, dict(study.best_params)
    from audioclf.reporting import write_report

    result.report = write_report(tune_dir)
    return result


def _multi_label(store_path: str) -> bool:
    from audioclf.data.store import Store

    store = Store(store_path)
    try:
        return store.multi_label
    finally:
        store.close()


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _requeue_cut_off(study: Any, tune_dir: Path) -> None:
    """Trials still RUNNING in the storage were cut off (one search runs per directory):
    mark them failed, drop their half-written run, and queue their values so that they
    run again first (as a new trial)."""
    import shutil

    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        shutil.rmtree(tune_dir / f"trial-{t.number:04d}", ignore_errors=True)
        if t.params:
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
        log.warning("tune: trial %d was cut off; it runs again with the same values", t.number)


def _check_same_search(tune_dir: Path, recipe_doc: dict[str, Any], protocol: str, cv_folds: int | None) -> None:
    """Continuing a search with another recipe would mix two experiments: refuse."""
    saved = tune_dir / "recipe.yaml"
    if not saved.is_file():
        return
    from audioclf.config import flatten_config

    before = flatten_config(yaml.safe_load(saved.read_text()) or {})
    now = flatten_config(yaml.safe_load(yaml.safe_dump(recipe_doc)) or {})
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    meta = json.loads((tune_dir / "tune.json").read_text()) if (tune_dir / "tune.json").is_file() else {}
    if meta and (meta.get("protocol"), meta.get("cv_folds")) != (protocol, cv_folds):
        differ.append("protocol")
    if differ:
        raise ConfigError(
            f"{tune_dir} holds a search of another recipe ({', '.join(differ[:8])} differ): continue it with "
            f"--resume {tune_dir}, or give the search another --name"
        )


# --- results --------------------------------------------------------------------------


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, values, the last reported epoch."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        last = max(t.intermediate_values) if t.intermediate_values else None
        value = t.value if t.value is not None else (t.intermediate_values[last] if last is not None else None)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number, "state": t.state.name.lower(), "value": value,
            "steps": len(t.intermediate_values), "seconds": round(seconds, 1) if seconds is not None else None,
            "params": dict(t.params),
        })
    return rows


def write_tables(study: Any, tune_dir: Path, metric: str) -> list[dict[str, Any]]:
    """``trials.csv`` and ``trials.json`` (what the report and the CLI table show)."""
    rows = trial_rows(study)
    keys = sorted({k for r in rows for k in r["params"]})
    with (tune_dir / "trials.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "state", metric, "epochs_reported", "seconds", *keys])
        for r in rows:
            w.writerow([r["number"], r["state"], "" if r["value"] is None else f"{r['value']:.6f}", r["steps"],
                        r["seconds"] or "", *(r["params"].get(k, "") for k in keys)])
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    doc = {
        "metric": metric, "direction": "maximize", "params": keys, "trials": rows,
        "best": best, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scored_on": "validation data only (the test split or fold is never read by a trial)",
    }
    (tune_dir / "trials.json").write_text(json.dumps(doc, indent=2, default=str))
    return rows


def write_best_recipe(
    study: Any, user: dict[str, Any], tune_dir: Path, metric: str, protocol: str, recipe: str | Path | None
) -> Path | None:
    """``best.yaml``: the searched recipe with the best trial's values, no ``tune:``."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    raw = copy.deepcopy(user)
    for key, value in best.params.items():
        set_dotted(raw, key, value)
    raw["name"] = f"{raw.get('name', Config().name)}-best"
    header = (
        f"# Best of {len(complete)} completed trial(s) of `audioclf tune` ({tune_dir}):\n"
        f"# trial {best.number}, {metric} {best.value:.4f} on validation data ({protocol} protocol; the test\n"
        f"# split or fold was never read). Searched recipe: {recipe or tune_dir / 'recipe.yaml'}.\n"
        f"# Values found: {', '.join(f'{k}={v}' for k, v in best.params.items())}\n"
        f"# Train it: audioclf train {tune_dir / 'best.yaml'}\n"
    )
    path = tune_dir / "best.yaml"
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return path
