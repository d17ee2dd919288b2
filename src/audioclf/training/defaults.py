"""Default recipes for a user's own store, chosen by what the store is.

``audioclf train data.store=my.h5`` with no recipe file trains with ``recipe: auto``: the
store is looked at (single- or multi-label, how long its clips are) and one of the recipes
in ``configs/defaults/`` (shipped inside the package as ``audioclf/defaults/``) is laid
under the user's settings: waveform augmentation, SpecAugment, label smoothing, a warm-up
before the cosine schedule and an EMA of the weights. ``recipe: none`` is the bare
training of the schema's defaults; ``recipe: <name>`` forces one default recipe, and a
recipe file may name one to build on it.

What the user sets always wins: the default recipe is the bottom layer, then the recipe
file, then the dotted overrides (``data.augment.pitch_shift.p=0`` turns one augmentation
off and keeps the others, ``data.augment={}`` turns them all off).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audioclf.config import (
    Config,
    ConfigError,
    ModelConfig,
    apply_overrides,
    read_config_file,
    validate_config,
)
from audioclf.registry import Registry

log = logging.getLogger(__name__)

# Clips up to this long (median over the store) count as "short": words, short events.
SHORT_CLIP_SECONDS = 2.5
# The longest crop a default recipe trains on; longer clips are randomly cropped.
MAX_DEFAULT_CLIP_SECONDS = 10.0


@dataclass(frozen=True)
class StoreFacts:
    """What the choice of a default recipe looks at."""

    multi_label: bool
    median_seconds: float
    sample_rate: int
    clips: int

    @classmethod
    def of(cls, path: str | Path) -> StoreFacts:
        from audioclf.data.store import Store

        store = Store(path)
        try:
            lengths = store.lengths
            median = float(np.median(lengths)) / store.sample_rate if len(lengths) else 0.0
            return cls(store.multi_label, median, store.sample_rate, len(store))
        finally:
            store.close()


@dataclass(frozen=True)
class StoreKind:
    name: str
    description: str
    matches: Callable[[StoreFacts], bool]


# Checked in registration order; the first that matches names the recipe file.
_KINDS: Registry[StoreKind] = Registry("store kind")


def register_store_kind(name: str, description: str) -> Callable[[Callable[[StoreFacts], bool]], Callable]:
    """Register a kind of store and the test that recognises it; its default recipe is
    ``configs/defaults/<name>.yaml``."""

    def wrap(fn: Callable[[StoreFacts], bool]) -> Callable[[StoreFacts], bool]:
        _KINDS.add(name, StoreKind(name, description, fn))
        return fn

    return wrap


@register_store_kind("multi_label", "multi-label tagging (several labels per clip)")
def _is_multi_label(f: StoreFacts) -> bool:
    return f.multi_label


@register_store_kind("short_clips", f"short single-label clips (median up to {SHORT_CLIP_SECONDS:g} s: words, short events)")
def _is_short(f: StoreFacts) -> bool:
    return f.median_seconds <= SHORT_CLIP_SECONDS


@register_store_kind("scenes", f"environmental sounds and scenes (single-label, median over {SHORT_CLIP_SECONDS:g} s)")
def _is_scene(f: StoreFacts) -> bool:
    return True


# What each ingredient of a default recipe sets, and the override that turns it off. The
# ablation benchmark switches them on one at a time with the same table.
INGREDIENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "waveform augmentation": (("data.augment",), "data.augment={}"),
    "SpecAugment": (("task.spec_augment",), "task.spec_augment={}"),
    "mixup": (("task.mix",), "task.mix.methods={}"),
    "label smoothing": (("task.label_smoothing",), "task.label_smoothing=0"),
    "warm-up + cosine": (("optim.warmup_epochs", "optim.scheduler", "optim.min_lr"), "optim.warmup_epochs=0"),
    "EMA": (("task.ema_decay", "task.ema_unit"), "task.ema_decay=null"),
}


def list_default_recipes() -> list[str]:
    return _KINDS.names()


def defaults_dir() -> Path:
    """The folder of the default recipes: ``audioclf/defaults`` in the installed package
    (in a source checkout a link to ``configs/defaults``)."""
    return Path(str(resources.files("audioclf") / "defaults"))


def read_default_recipe(name: str) -> dict[str, Any]:
    """The settings of default recipe ``name`` as a nested dict."""
    if name not in _KINDS:
        raise ConfigError(f"recipe: unknown default recipe {name!r}; choose auto, none or one of {', '.join(_KINDS.names())}")
    path = defaults_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"recipe: default recipe file {path} is missing from the installation")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw


def choose_store_kind(facts: StoreFacts) -> StoreKind:
    return next(k for _, k in _KINDS.items() if k.matches(facts))


@dataclass
class RecipeChoice:
    """Which default recipe a config was laid on, and why."""

    name: str
    reason: str
    settings: dict[str, Any]
    filled: dict[str, Any] = field(default_factory=dict)  # settings fitted to the store

    def ingredients(self) -> list[tuple[str, str]]:
        """(ingredient, the override that turns it off) for those the recipe sets."""
        flat = flatten_keys(self.settings)
        return [(name, off) for name, (keys, off) in INGREDIENTS.items()
                if any(k == p or k.startswith(p + ".") for k in flat for p in keys)]

    def lines(self) -> list[str]:
        """What to tell the user: the recipe, why, and how to turn each part off."""
        out = [f"default recipe: {self.name}, for {self.reason}", f"  from {defaults_dir() / (self.name + '.yaml')}"]
        for key, value in self.filled.items():
            out.append(f"  {key}={value} fitted to the store")
        for name, off in self.ingredients():
            out.append(f"  {name}: on; turn off with {off}")
        out.append("  recipe=none trains with none of it")
        return out


def flatten_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            keys += flatten_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base`` (a new dict): mappings merge key by key, anything else
    (an empty mapping included, which is how a part is switched off) replaces."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and v and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _has(raw: dict[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _store_fits(facts: StoreFacts, user: dict[str, Any]) -> dict[str, Any]:
    """Settings fitted to the store where the user set none: the crop length (the store's
    median clip, at most MAX_DEFAULT_CLIP_SECONDS) and, for the default model, its rate."""
    from audioclf.models import get_model_info

    fits: dict[str, Any] = {}
    default_model = ModelConfig().name
    user_model = user.get("model") if isinstance(user.get("model"), dict) else {}
    model_name = user_model.get("name", default_model)
    try:
        info = get_model_info(model_name)
    except (KeyError, ValueError):
        info = None  # an unknown model is reported when the config is used
    clip = round(min(facts.median_seconds, MAX_DEFAULT_CLIP_SECONDS), 2)
    if not _has(user, "data.clip_seconds") and clip > 0 and (info is None or info.clip_seconds != clip):
        fits["data.clip_seconds"] = clip
    if (model_name == default_model and info is not None and not _has(user, "model.settings.sample_rate")
            and int(info.sample_rate) != facts.sample_rate):
        fits["model.settings.sample_rate"] = facts.sample_rate
    return fits


def resolve_recipe(user: dict[str, Any], default: str = "none") -> tuple[dict[str, Any], RecipeChoice | None]:
    """Lay the default recipe that ``user['recipe']`` (else ``default``) names under
    ``user`` (a raw config: recipe file with overrides applied). Returns the raw config to
    validate (its ``recipe`` set to the recipe applied, so the saved config says it) and
    the choice, or None for ``recipe: none``."""
    spec = user.get("recipe", default)
    spec = "none" if spec is None else str(spec)
    if spec == "none":
        return {**user, "recipe": "none"}, None
    store = (user.get("data") or {}).get("store") if isinstance(user.get("data"), dict) else None
    facts = StoreFacts.of(store) if store else None
    if spec == "auto":
        if facts is None:  # nothing to look at; training then asks for data.store
            return {**user, "recipe": "none"}, None
        kind = choose_store_kind(facts)
        reason = f"{kind.description}; this store's median clip: {facts.median_seconds:.2f} s"
    elif spec in _KINDS:
        kind = _KINDS.get(spec)
        reason = "named in the config"
    else:
        raise ConfigError(f"recipe: unknown value {spec!r}; choose auto, none or one of {', '.join(_KINDS.names())}")
    settings = read_default_recipe(kind.name)
    fits = _store_fits(facts, user) if facts is not None else {}
    base = apply_overrides(copy.deepcopy(settings), [f"{k}={v}" for k, v in fits.items()])
    raw = merge(base, user)
    raw["recipe"] = kind.name
    return raw, RecipeChoice(kind.name, reason, settings, fits)


def read_recipe_file(path: str | Path | None) -> dict[str, Any]:
    """A YAML recipe file as a nested dict (``{}`` for None); errors name the file."""
    return read_config_file(path)


def load_train_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    raw: dict[str, Any] | None = None,
    announce: bool = True,
) -> tuple[Config, RecipeChoice | None]:
    """The config ``audioclf train`` runs: the recipe file (or ``raw``, or nothing), the
    overrides on it, and under both the default recipe its ``recipe`` key names. Without
    a recipe file ``recipe`` defaults to ``auto``; a recipe file builds on nothing unless
    it names a default recipe (the published recipes hold only what differs from the bare
    defaults). The choice is logged with how to turn each part off (``announce=False``:
    the caller shows ``choice.lines()`` itself)."""
    user = copy.deepcopy(raw) if raw is not None else read_recipe_file(path)
    apply_overrides(user, list(overrides or []))
    # the user's own settings are checked first, so a typo is reported before a store is read
    validate_config({**user, "recipe": "none"}, source=str(path) if path else "config")
    resolved, choice = resolve_recipe(user, default="none" if (path is not None or raw is not None) else "auto")
    config = validate_config(resolved, source=str(path) if path else "config")
    if choice is not None and announce:
        for line in choice.lines():
            log.info(line)
    return config, choice
