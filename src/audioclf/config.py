"""Typed run configuration: YAML recipe + dotted command-line overrides + validation.

A recipe holds only what differs from the defaults below. Overrides use dotted keys and
YAML values (``trainer.max_epochs=3``, ``data.store=data/esc50.h5``, ``model.settings={}``).
Any unknown key or bad value fails before work starts, with the dotted key and what is
allowed. The resolved config (defaults filled in) is saved as ``config.yaml`` in each run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audioclf.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Which store, which clips go where, and how batches are made."""

    store: str | None = Field(None, description="path to a packed store (.h5 file or shard directory)")
    # Named-split protocol (Speech Commands, AudioSet, synthetic, folder datasets).
    train_split: str | list[str] | None = "train"
    val_split: str | list[str] | None = "validation"
    test_split: str | list[str] | None = "test"
    # k-fold protocol (ESC-50, UrbanSound8K): test on `fold`, train on the others.
    fold: int | None = None
    val_fold: int | None = Field(None, description="validation fold held out of the training folds")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="stratified share of the training clips used for validation: k-fold "
        "without val_fold, or a store with train (and test) but no validation split"
    )
    clip_seconds: float | None = Field(None, gt=0, description="crop/pad length; default: the model's")
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes per training process; auto: one per core but one, "
        "at most 8, none on one core; 0 loads in the training process (the same batches either way)"
    )
    prefetch_factor: int = Field(4, ge=1, description="batches each worker prepares ahead")
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    augment: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="label-preserving waveform augmentations: name -> options with p"
    )


class ModelConfig(_Section):
    name: str = "cnn_lite"
    pretrained: str | None = Field(
        None,
        description="checkpoint to start from: a published file or Hugging Face directory, an audioclf "
        "checkpoint, or an audioclf run directory (its best checkpoint); a glob such as "
        "runs/us8k-pretrain-* picks the newest match; or a catalog name (panns-cnn14, see "
        "`audioclf models --pretrained`) or a Hub id hf:ORG/REPO[@REV]",
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="overrides passed to create_model")
    freeze: list[str] = Field(default_factory=list, description="parameter-name prefixes to freeze")


class MixConfig(_Section):
    """Label-mixing batch augmentation (on the accelerator)."""

    methods: dict[str, float] = Field(default_factory=dict, description="mixup|cutmix|timemix|freqmix -> weight")
    alpha: float = Field(1.0, gt=0)
    mix_ratio: float = Field(1.0, ge=0, le=1, description="probability that a batch is mixed")
    epoch_mix: int = Field(0, ge=0, description="first epoch with mixing")


class TaskConfig(_Section):
    loss: Literal["auto", "ce", "bce"] = Field("auto", description="auto: ce for single-label, bce for multi-label")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    mix: MixConfig = Field(default_factory=MixConfig)
    spec_augment: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep an EMA of the weights, evaluated and saved")
    ema_unit: Literal["step", "epoch"] = Field(
        "step", description="ema_decay is per optimiser step, or per epoch (spread evenly over its steps, as in EAT)"
    )


class OptimConfig(_Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW moment decay rates")
    amsgrad: bool = Field(False, description="Adam/AdamW AMSGrad variant (PANNs trains with it)")
    fused: bool | None = Field(
        None,
        description="one fused kernel for the whole optimiser step (the same update, several times faster "
        "than the per-parameter loop); default: on where torch has it (CPU and CUDA), off under FSDP",
    )
    layer_lr: dict[str, float] = Field(default_factory=dict, description="parameter-name prefix -> lr multiplier")
    scheduler: Literal["none", "cosine", "onecycle", "plateau"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_fraction: float | None = Field(
        None, ge=0, lt=1, description="warm-up as a share of all steps (instead of warmup_epochs); onecycle's pct_start"
    )
    min_lr: float = Field(0.0, ge=0)
    plateau_patience: int = Field(3, ge=0)
    plateau_factor: float = Field(0.5, gt=0, lt=1)


class TrainerConfig(_Section):
    max_epochs: int = Field(10, ge=1)
    max_steps: int = Field(-1, ge=-1)
    accelerator: str = "auto"
    devices: int | str = Field("auto", description="devices per node: a count, 'auto', or a list such as '0,1'")
    num_nodes: int = Field(1, ge=1, description="machines in a multi-node run (each with `devices` devices)")
    strategy: str = Field(
        "auto",
        description="Lightning strategy: auto, ddp (one process per device; Lightning starts them, or torchrun/"
        "SLURM does), ddp_find_unused_parameters_true, fsdp (shards the weights; models too large for one "
        "device), ... (docs/scaling.md)",
    )
    sync_batchnorm: bool = Field(
        False, description="under DDP, batch-norm statistics over all processes' batches (small per-GPU batches)"
    )
    precision: Literal["32", "16-mixed", "bf16-mixed", "32-true", "bf16-true"] = "32"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: Any) -> Any:
        # YAML reads `precision: 32` as an int
        return str(v) if isinstance(v, int) else v
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, gt=0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    early_stopping_patience: int | None = Field(None, ge=1)
    limit_train_batches: float | int | None = None
    limit_val_batches: float | int | None = None
    log_every_n_steps: int = Field(10, ge=1)
    progress_bar: bool = True
    activation_checkpointing: bool = False
    compile: bool = Field(False, description="train the model through torch.compile (needs a C++ compiler on the CPU)")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="2-D CNNs: convolutions channels-last (NHWC); auto: on for the models measured faster so (cnn_lite)"
    )
    resume: str | None = Field(None, description="run directory (or checkpoint) to resume from")
    checkpoint_every_n_steps: int | None = Field(
        None, ge=1, description="also refresh last.ckpt every N optimiser steps, so a killed run loses at most N"
    )
    loggers: list[Literal["csv", "tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=lambda: ["csv"],
        description="Lightning loggers; csv is always on (metrics.csv), the others need their extra",
    )
    callbacks: list[str] = Field(
        default_factory=list, description="extra Lightning callbacks by import path, 'package.module:Class'"
    )


class Config(_Section):
    name: str = "run"
    recipe: str = Field(
        "none",
        description="default recipe the config is laid on: none (bare training), auto (chosen by what the "
        "store is) or a name in configs/defaults/; `audioclf train` with no recipe file uses auto",
    )
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @field_validator("name")
    @classmethod
    def _name_is_one_path_component(cls, v: str) -> str:
        # the run directory is output_dir/<name>-<time>: a name with a separator or ".."
        # would put it (and everything the run writes) somewhere else
        if not v or v in (".", "..") or any(c in v for c in "/\\\x00") or v.startswith("."):
            raise ValueError(f"name must be a plain directory name (no '/', '\\', or leading '.'), got {v!r}")
        return v

    @model_validator(mode="after")
    def _folds_consistent(self) -> Config:
        d = self.data
        if d.val_fold is not None and d.fold is None:
            raise ValueError("data.val_fold needs data.fold (the test fold) to be set")
        if d.fold is not None and d.val_fold == d.fold:
            raise ValueError("data.val_fold must differ from data.fold: never validate on the test fold")
        if self.optim.warmup_fraction is not None and self.optim.warmup_epochs:
            raise ValueError("optim.warmup_epochs and optim.warmup_fraction are two ways to say the same thing: set one")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- loading ----------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=VALUE"`` -> (["a", "b", "c"], yaml-parsed VALUE)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nesting past Python's stack
        raise ConfigError(f"override {key}: value {raw[:80]!r} is not valid YAML ({type(err).__name__}: {err})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted override into the nested dict ``raw`` (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def read_config_file(path: str | Path | None) -> dict[str, Any]:
    """A YAML recipe file as a nested dict (``{}`` for None); every error names the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{path}: is a directory, not a YAML config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise ConfigError(f"{path}: not valid YAML ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML recipe (or start from the defaults), apply overrides, validate."""
    raw = read_config_file(path)
    apply_overrides(raw, list(overrides or []))
    return validate_config(raw, source=str(path) if path else "config")


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    _check_acyclic(raw, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except RecursionError:  # a YAML alias that contains itself
        raise ConfigError(f"{source}: a value refers to itself (a recursive YAML alias)") from None


def _check_acyclic(node: Any, source: str, path: str = "", seen: tuple[int, ...] = ()) -> None:
    """A YAML alias can make a value contain itself (``a: &x [*x]``): no config is that."""
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            raise ConfigError(f"{source}: {path or 'the config'} contains itself (a recursive YAML alias)")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            _check_acyclic(v, source, f"{path}.{k}" if path else str(k), (*seen, id(node)))


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"][:-1])
            lines.append(f"  {key}: unknown key;{suggest_key(key)} allowed keys here: {', '.join(allowed)}")
        elif not e["loc"]:
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return sorted(model.model_fields)


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> ``{"trainer.max_epochs": 10, ...}`` (to compare two configs)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


# --- the schema, described (`audioclf config show`) ------------------------------------------


@dataclass(frozen=True)
class ConfigKey:
    """One settable key of the schema, for listings and docs."""

    key: str  # dotted, e.g. "trainer.max_epochs"
    type: str  # e.g. "int", "float or null", "mapping"
    default: Any
    allowed: str  # choices or bounds, e.g. "adamw | adam | sgd", ">= 1"; "" when anything of the type
    description: str


def _type_text(ann: Any) -> str:
    origin, args = get_origin(ann), get_args(ann)
    if ann is type(None):
        return "null"
    if origin is Literal:
        kinds = sorted({type(a).__name__ for a in args})
        return " or ".join("str" if k == "str" else k for k in kinds)
    if origin in (Union, UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is dict:
        return "mapping"
    if origin is list:
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is tuple:
        return f"{len(args)} x {_type_text(args[0])}" if args and len(set(args)) == 1 else "tuple"
    return getattr(ann, "__name__", str(ann))


def _allowed_text(ann: Any, metadata: list[Any]) -> str:
    if get_origin(ann) is Literal:
        return " | ".join(str(a) for a in get_args(ann))
    for a in get_args(ann):  # `Literal[...] | None`
        if get_origin(a) is Literal:
            return " | ".join(str(x) for x in get_args(a)) + " | null"
    bounds = []
    for m in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(bounds)


def describe_config(config: Config | None = None) -> list[ConfigKey]:
    """Every key of the schema with its type, allowed values and description, in schema
    order; ``default`` is the value in ``config`` when given (a loaded recipe), else the
    schema default."""
    values = flatten_config((config or Config()).to_dict())
    keys: list[ConfigKey] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            key = f"{prefix}{name}"
            keys.append(ConfigKey(key, _type_text(ann), values.get(key), _allowed_text(ann, field.metadata),
                                  field.description or ""))

    walk(Config, "")
    return keys


def all_keys() -> list[str]:
    """Every dotted key of the schema (sections and leaves)."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            out.append(f"{prefix}{name}")
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")

    walk(Config, "")
    return out


def suggest_key(key: str) -> str:
    """A "did you mean" for an unknown dotted ``key``: a key of the same name in another
    section first (``data.max_epochs`` -> ``trainer.max_epochs``), else the closest key."""
    from audioclf.text import did_you_mean

    known = all_keys()
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf and k != key]
    if same_leaf:
        return " did you mean " + " or ".join(repr(k) for k in same_leaf[:2]) + "?"
    return did_you_mean(key, known, cutoff=0.75)
