"""The model registry: ``@register_model`` on small variant functions, ``create_model`` to build.

The contract every registered model keeps (see docs/architecture.md):

* ``forward(waveform)`` takes ``(batch, samples)`` float32 at ``model.sample_rate`` and
  returns logits ``(batch, num_classes)``; it is
  ``head(forward_features(frontend(waveform)))``.
* ``frontend`` (log-mel, Kaldi fbank, or ``nn.Identity`` for raw-waveform models) is a
  submodule of the model, so training and inference cannot drift apart;
  ``forward_features(spec)`` maps its output to the embedding ``(batch, embed_dim)``,
  ``head`` maps that to logits, and ``embed(waveform)`` is the embedding.
* Attributes ``sample_rate`` (int), ``clip_samples`` (int: the clip length the model is
  built or trained for; fixed-length models reject other lengths) and ``num_classes``.
* ``head_prefixes`` (tuple of state-dict key prefixes): the classification head, which
  ``create_model(..., pretrained=...)`` replaces when the class count differs.
* Optionally ``remap_checkpoint(obj) -> state_dict`` turning a published checkpoint file's
  content into this model's key space (see :mod:`audioclf.models.checkpoints`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from audioclf.errors import ConfigError
from audioclf.registry import Registry

log = logging.getLogger(__name__)

# Modules that define model families. They are imported on first use of the registry,
# never at package import, so `import audioclf` stays cheap.
_FAMILY_MODULES = (
    "audioclf.models.baselines",
    "audioclf.models.panns",
    "audioclf.models.eat",
    "audioclf.models.blocks",
    "audioclf.models.ast",
    "audioclf.models.beats",
)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it."""

    name: str
    fn: Callable[..., nn.Module] = field(repr=False)
    family: str
    description: str
    paper: str = ""
    # Default input: the rate the model expects and the clip length it is built for.
    sample_rate: int = 16000
    clip_seconds: float | None = None
    # Extras needed to build it (e.g. "transformers"); listed by `audioclf models`.
    requires: tuple[str, ...] = ()


def _load_families() -> None:
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # A family module that is not written yet, or whose own optional import
            # is missing, must not hide the others.
            if err.name and err.name.startswith("audioclf.models."):
                log.debug("model family %s not available: %s", module, err)
            else:
                raise


REGISTRY: Registry[ModelInfo] = Registry("model", loader=_load_families)


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    family: str = "",
    paper: str = "",
    sample_rate: int = 16000,
    clip_seconds: float | None = None,
    requires: tuple[str, ...] = (),
    name: str | None = None,
) -> Any:
    """Register a model variant function ``fn(num_classes, **overrides) -> nn.Module``.

    Usable bare (``@register_model``) or with keywords. The first docstring line becomes
    the description shown by ``audioclf models``.
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = inspect.getdoc(f) or ""
        info = ModelInfo(
            name=name or f.__name__,
            fn=f,
            family=family or f.__module__.rsplit(".", 1)[-1],
            description=doc.splitlines()[0] if doc else "",
            paper=paper,
            sample_rate=sample_rate,
            clip_seconds=clip_seconds,
            requires=requires,
        )
        REGISTRY.add(info.name, info)
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Names of all registered models, sorted; ``pattern`` filters by substring."""
    names = sorted(REGISTRY.names())
    return [n for n in names if pattern is None or pattern in n]


def get_model_info(name: str) -> ModelInfo:
    return REGISTRY.get(name)


def create_model(
    name: str,
    num_classes: int,
    pretrained: str | Path | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs.

    ``overrides`` are passed to the variant function (e.g. ``sample_rate=16000``).
    ``pretrained`` is a path to a published checkpoint (PANNs ``.pth``, BEATs ``.pt``, a
    Hugging Face AST directory) or an audioclf checkpoint; a head with another class count
    is replaced and a message is logged.
    """
    info = REGISTRY.get(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    try:
        model = info.fn(num_classes=num_classes, **overrides)
    except TypeError as err:
        # only a setting the variant does not take, or one the variant fixes itself (cnn6's
        # channels), is the config's fault; any other TypeError raised while building is a
        # bug and keeps its traceback
        if "unexpected keyword argument" in str(err):
            raise ConfigError(f"bad settings for model {name!r}: {err} (docs/models.md lists each model's settings)") from err
        if "got multiple values for keyword argument" in str(err):
            raise ConfigError(f"bad settings for model {name!r}: {err}: the variant sets it (docs/models.md lists "
                              "each model's settings)") from err
        raise
    for attr in ("sample_rate", "clip_samples", "num_classes", "frontend", "forward_features", "head"):
        if not hasattr(model, attr):
            raise TypeError(f"model {name!r} does not set the contract attribute {attr!r}")
    if pretrained is not None:
        from audioclf.models.checkpoints import load_pretrained

        load_pretrained(model, pretrained)
    return model


# --- summaries (`audioclf models`) -----------------------------------------------------------


@dataclass(frozen=True)
class ModelSummary:
    """A model's size and input, as built with its default settings."""

    name: str
    num_classes: int
    params: int
    sample_rate: int
    clip_samples: int


def cache_dir() -> Path:
    """Where audioclf keeps downloads and small derived files: ``$AUDIOCLF_CACHE``, else
    ``$XDG_CACHE_HOME/audioclf``, else ``~/.cache/audioclf``."""
    if os.environ.get("AUDIOCLF_CACHE"):
        return Path(os.environ["AUDIOCLF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "audioclf"


# Counts of the registered models at the listing's default head (527 classes, AudioSet),
# shipped with the package so that even the first `audioclf models` imports no optional
# extra (transformers for AST). tests/models/test_registry.py checks every entry against
# the model itself, so the file cannot go stale unnoticed.
SHIPPED_SUMMARIES = "assets/model_summaries.json"
SHIPPED_CLASSES = 527


def _shipped_summary(name: str) -> dict[str, int] | None:
    import json

    try:
        table = json.loads((Path(__file__).parent / SHIPPED_SUMMARIES).read_text())
    except (OSError, ValueError):
        return None
    entry = table.get(name)
    return entry if isinstance(entry, dict) else None


def _summary_key(info: ModelInfo, num_classes: int) -> str:
    # the variant's source file (size and mtime) is part of the key, so an edited model
    # never shows a stale count
    source = Path(inspect.getsourcefile(info.fn) or "")
    try:
        st = source.stat()
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        stamp = "?"
    return f"{info.name}|{num_classes}|{source.name}|{stamp}"


def model_summary(name: str, num_classes: int = 527, *, build: bool = False, use_cache: bool = True) -> ModelSummary:
    """Parameter count, sample rate and clip length of model ``name``.

    By default the model is built on PyTorch's ``meta`` device (shapes only: no memory, no
    weight initialisation; milliseconds for CNN14) and the result is cached in
    :func:`cache_dir` by name, class count and the model file's stamp, so listing the zoo
    skips even the import of optional extras (``transformers``) once it has been listed
    before; at the default 527 classes the counts shipped with the package
    (``SHIPPED_SUMMARIES``) are used, so the first listing is as fast. ``build=True`` builds the model for real (checks that it constructs; slow)
    and neither reads nor writes the cache.
    """
    import json

    import torch

    info = REGISTRY.get(name)
    if use_cache and not build and num_classes == SHIPPED_CLASSES and (c := _shipped_summary(name)):
        return ModelSummary(name, num_classes, int(c["params"]), int(c["sample_rate"]), int(c["clip_samples"]))
    key = _summary_key(info, num_classes)
    path = cache_dir() / "model_summaries.json"
    cache: dict[str, Any] = {}
    if use_cache and not build:
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        if isinstance(cache.get(key), dict):
            c = cache[key]
            return ModelSummary(name, num_classes, int(c["params"]), int(c["sample_rate"]), int(c["clip_samples"]))
    model = None
    if not build:
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes)
        except (RuntimeError, NotImplementedError) as err:  # a constructor that reads tensor values
            log.debug("model %s cannot be built on the meta device (%s); building it for real", name, err)
    if model is None:
        model = create_model(name, num_classes)
    summary = ModelSummary(
        name, num_classes, sum(p.numel() for p in model.parameters()), int(model.sample_rate), int(model.clip_samples)
    )
    if use_cache and not build:
        cache[key] = {"params": summary.params, "sample_rate": summary.sample_rate, "clip_samples": summary.clip_samples}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
            tmp.replace(path)  # atomic: two listings at once never leave half a file
        except OSError as err:  # a read-only home: the listing still works, only slower
            log.debug("model summary cache not written (%s): %s", path, err)
    return summary
