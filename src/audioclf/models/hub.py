"""The Hugging Face Hub, both ways: download models by ``hf:`` id, read model directories,
write and push audioclf's own Hub format.

Model sources handled here (the resolver in ``models/pretrained.py`` dispatches to them):

* ``hf:ORG/REPO[@REVISION]``: the repository's snapshot (``snapshot_download``), at a
  branch, tag or commit; ``hf:ORG/REPO/FILE[@REVISION]``: one file of it (``hf_hub_download``).
  Both go through the Hub's own cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``);
  ``offline=True`` or ``HF_HUB_OFFLINE=1`` uses only that cache.
* a model directory (downloaded or local): audioclf's Hub format, or a ``transformers``
  audio-classification directory (AST), whose labels come from ``config.json``'s ``id2label``.

audioclf's Hub format is three files: ``model.safetensors`` (the weights, no pickle),
``config.json`` (architecture, model settings, labels, sample rate, clip length, task,
audioclf version) and a model card ``README.md`` (Hub YAML front matter, the run's metrics,
dataset, recipe, usage). :func:`save_pretrained` writes it, :func:`load_model_dir` reads it
back with bit-identical outputs, :func:`push_to_hub` uploads it.

``huggingface_hub``, ``safetensors`` and ``transformers`` are imported inside the functions
that use them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.errors import AudioclfError

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
# the transformers model types read here, and the audioclf model built for each
TRANSFORMERS_MODELS = {"audio-spectrogram-transformer": "ast"}
# weights for other frameworks that a snapshot leaves out (the same patterns online and
# offline, so huggingface_hub's completeness check of a cached snapshot agrees)
OTHER_FRAMEWORKS = (
    "*.h5", "*.msgpack", "*.tflite", "*.ot", "*.mlmodel", "tf_model*", "flax_model*", "rust_model*",
    "*.onnx", "onnx/*", "coreml/*", "openvino/*",
)  # fmt: skip
# AudioSet is multi-label; MIT's AudioSet AST checkpoints do not record problem_type
AUDIOSET_CLASSES = 527

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_SOURCE_RE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:/(?P<file>[^@]+?))?(?:@(?P<rev>[^@]+))?$")


class HubError(AudioclfError, ValueError):
    """A Hub source that cannot be parsed, found or read; the message names it."""


@dataclass(frozen=True)
class HubSource:
    """A parsed ``hf:`` model source."""

    repo_id: str
    filename: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        file = f"/{self.filename}" if self.filename else ""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HF_PREFIX}{self.repo_id}{file}{rev}"


def is_hub_source(source: object) -> bool:
    """Whether ``source`` is written as a Hub id (``hf:...``)."""
    return isinstance(source, str) and source.startswith(HF_PREFIX)


def parse_hub_source(source: str) -> HubSource:
    """``"hf:ORG/REPO[/FILE][@REVISION]"`` -> :class:`HubSource`; a clear error otherwise.

    The revision (branch, tag or commit) comes after the last ``@``; ``FILE`` may name a
    file in a sub-folder (``hf:org/repo/weights/model.pt``).
    """
    if not is_hub_source(source):
        raise HubError(f"{source!r}: not a Hub id (expected hf:ORG/REPO[@REVISION] or hf:ORG/REPO/FILE[@REVISION])")
    m = _SOURCE_RE.match(source[len(HF_PREFIX) :])
    bad_file = m is not None and m["file"] is not None and any(p in ("", ".", "..") for p in m["file"].split("/"))
    if m is None or bad_file:
        raise HubError(
            f"{source!r}: not a Hub id; expected hf:ORG/REPO[@REVISION] or hf:ORG/REPO/FILE[@REVISION] "
            "(e.g. hf:MIT/ast-finetuned-audioset-10-10-0.4593@main)"
        )
    return HubSource(m["repo"], m["file"], m["rev"])


def _offline_env() -> bool:
    # read when called, not when huggingface_hub was imported, so a script may set it late
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_download(source: str, *, offline: bool = False) -> Path:
    """Fetch a Hub model source into the Hub cache and return its local path.

    ``hf:ORG/REPO[@REV]`` -> the snapshot directory of that revision (without weights for
    other frameworks: TensorFlow, Flax, ONNX, Core ML, OpenVINO);
    ``hf:ORG/REPO/FILE[@REV]`` -> the cached file. Files already cached for the resolved
    commit are not downloaded again. With ``offline`` (or ``HF_HUB_OFFLINE=1``) only the
    cache is used, and a missing entry is a :class:`FileNotFoundError` naming the repository,
    file and revision.
    """
    ref = parse_hub_source(source)
    offline = offline or _offline_env()
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"file {ref.filename!r} of " if ref.filename else ""
    where = f"{what}Hub repository {ref.repo_id!r} at revision {ref.revision or 'main'!r}"
    try:
        if ref.filename:
            path = hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision, local_files_only=offline)
        else:
            path = snapshot_download(
                ref.repo_id, revision=ref.revision, local_files_only=offline, ignore_patterns=list(OTHER_FRAMEWORKS)
            )
    except LocalEntryNotFoundError as err:
        from huggingface_hub import constants

        why = "offline mode is on (--offline or HF_HUB_OFFLINE=1)" if offline else f"the Hub could not be reached ({err})"
        raise FileNotFoundError(
            f"{source}: {where} is not in the Hub cache ({constants.HF_HUB_CACHE}) and {why}; "
            "run once with network access to cache it"
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(f"{source}: Hub repository {ref.repo_id!r} has no revision {ref.revision!r}") from err
    except RepositoryNotFoundError as err:
        raise HubError(f"{source}: no Hub repository {ref.repo_id!r} (or it is private or gated: log in with `hf auth login`)") from err
    except EntryNotFoundError as err:
        raise HubError(f"{source}: Hub repository {ref.repo_id!r} has no file {ref.filename!r} at revision {ref.revision or 'main'!r}") from err
    except HfHubHTTPError as err:
        raise HubError(f"{source}: the Hub refused the download ({err})") from err
    log.info("%s -> %s", source, path)
    return Path(path)


# --- reading a model directory --------------------------------------------------------------


def is_hub_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory in audioclf's Hub format (as :func:`save_pretrained` writes)."""
    path = Path(path)
    config = path / CONFIG_FILE
    if not (path.is_dir() and config.is_file() and (path / WEIGHTS_FILE).is_file()):
        return False
    try:
        return json.loads(config.read_text()).get("library_name") == "audioclf"
    except (OSError, ValueError, AttributeError):
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HubError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise HubError(f"{path}: expected a JSON object")
    return data


def load_model_dir(
    path: str | Path, *, model: str | None = None, device: str | torch.device = "cpu", task: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a directory holds, weights loaded, in eval mode.

    ``path`` is audioclf's Hub format (``config.json`` with ``"library_name": "audioclf"``
    and ``model.safetensors``) or a ``transformers`` audio-classification directory (AST:
    ``config.json`` with ``model_type`` ``audio-spectrogram-transformer``, its weights, and
    optionally ``preprocessor_config.json``). ``model`` names the audioclf architecture to
    build a transformers directory into (default: ``ast``; e.g. ``ast_speech_commands``);
    for audioclf's format it must agree with the one recorded. ``task`` overrides the
    task of a transformers directory (default: its ``problem_type``; 527 AudioSet classes
    are multi-label).

    Returns ``(model, info)``: ``info`` is the bundle info the
    :class:`~audioclf.inference.Classifier` takes (labels in output order, sample rate,
    clip length, task).
    """
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    if not config_file.is_file():
        raise HubError(f"{path}: no {CONFIG_FILE}; expected audioclf's Hub format or a transformers model directory")
    config = _read_json(config_file)
    if config.get("library_name") == "audioclf":
        built, info = _load_audioclf_dir(path, config, model)
    elif config.get("model_type") in TRANSFORMERS_MODELS:
        built, info = _load_transformers_dir(path, config, model, task)
    else:
        known = ", ".join(sorted(TRANSFORMERS_MODELS))
        raise HubError(
            f"{config_file}: neither audioclf's Hub format (library_name 'audioclf') nor a transformers model "
            f"audioclf reads (model_type {config.get('model_type')!r}; supported: {known})"
        )
    return built.to(device).eval(), info


def _load_audioclf_dir(path: Path, config: dict[str, Any], model: str | None) -> tuple[nn.Module, dict[str, Any]]:
    from safetensors.torch import load_model

    from audioclf.models import create_model

    file = path / CONFIG_FILE
    missing = [k for k in ("architecture", "num_classes", "label_names", "task", "sample_rate", "clip_samples") if k not in config]
    if missing:
        raise HubError(f"{file}: missing {', '.join(missing)}")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise HubError(f"{file}: format version {config['format_version']} is newer than this audioclf reads ({FORMAT_VERSION}); upgrade audioclf")
    arch = config["architecture"]
    if model is not None and model != arch:
        raise HubError(f"{file}: holds a {arch!r} model, not {model!r}")
    if len(config["label_names"]) != int(config["num_classes"]):
        raise HubError(f"{file}: {len(config['label_names'])} label names for {config['num_classes']} classes")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise HubError(f"{path}: no {WEIGHTS_FILE}")
    built = create_model(arch, int(config["num_classes"]), **config.get("model_settings", {}))
    try:
        # strict: every weight of the model and nothing else, or an error
        load_model(built, str(weights), strict=True, device="cpu")
    except (RuntimeError, OSError, ValueError) as err:
        raise HubError(f"{weights}: does not fit {arch!r} as {file.name} describes it ({err})") from err
    if int(built.sample_rate) != int(config["sample_rate"]):
        raise HubError(f"{file}: sample_rate {config['sample_rate']} but {arch!r} runs at {built.sample_rate} Hz")
    info = {
        "model": arch,
        "model_settings": dict(config.get("model_settings", {})),
        "num_classes": int(config["num_classes"]),
        "label_names": list(config["label_names"]),
        "task": config["task"],
        "sample_rate": int(config["sample_rate"]),
        "clip_samples": int(config["clip_samples"]),
        "weights": config.get("weights", "model"),
        "config": config.get("training_config", {}),
        "source": str(path),
    }
    return built, info


def _id2label(file: Path, config: dict[str, Any]) -> list[str]:
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise HubError(f"{file}: no id2label, so the outputs have no names")
    try:
        table = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError) as err:
        raise HubError(f"{file}: id2label keys must be class indices ({err})") from err
    if sorted(table) != list(range(len(table))):
        raise HubError(f"{file}: id2label must name every class index 0..{len(table) - 1}")
    return [table[i] for i in range(len(table))]


def _load_transformers_dir(
    path: Path, config: dict[str, Any], model: str | None, task: str | None
) -> tuple[nn.Module, dict[str, Any]]:
    from audioclf.models import create_model

    file = path / CONFIG_FILE
    labels = _id2label(file, config)
    arch = model or TRANSFORMERS_MODELS[config["model_type"]]
    # the encoder's sizes come from the directory; the frontend's statistics from its
    # feature extractor (load_pretrained_dir checks both against the model it builds)
    settings = {
        k: config[k]
        for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_length",
            "num_mel_bins", "patch_size", "frequency_stride", "time_stride",
        )
        if k in config
    }  # fmt: skip
    prep_file = path / "preprocessor_config.json"
    if prep_file.is_file():
        prep = _read_json(prep_file)
        if "mean" in prep:
            settings["fbank_mean"] = float(prep["mean"])
        if "std" in prep:
            settings["fbank_std"] = float(prep["std"])
    built = create_model(arch, len(labels), **settings)
    loader = getattr(built, "load_pretrained_dir", None)
    if loader is None:
        raise HubError(f"{file}: {arch!r} does not read transformers directories")
    loader(path)
    if task is None:
        problem = config.get("problem_type")
        multi = problem == "multi_label_classification" or (problem is None and len(labels) == AUDIOSET_CLASSES)
        task = "multi_label" if multi else "single_label"
    if task not in ("single_label", "multi_label"):
        raise HubError(f"task must be 'single_label' or 'multi_label', got {task!r}")
    info = {
        "model": arch,
        "model_settings": settings,
        "num_classes": len(labels),
        "label_names": labels,
        "task": task,
        "sample_rate": int(built.sample_rate),
        "clip_samples": int(built.clip_samples),
        "weights": "model",
        "config": {},
        "source": str(path),
    }
    return built, info


# --- writing audioclf's Hub format -------------------------------------------------------------


def save_pretrained(
    model: nn.Module,
    info: dict[str, Any],
    directory: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its bundle ``info`` to ``directory`` in audioclf's Hub format.

    ``metrics`` (a run's ``metrics.json``) fills the model card's table; ``card`` adds to
    the card: ``repo_id`` (used in the usage snippet), ``license``, ``datasets`` (Hub
    dataset ids), ``tags``, ``title``. Returns the directory. Loading it back
    (:func:`load_model_dir`, ``Classifier.from_pretrained``) gives bit-identical outputs.
    """
    from safetensors.torch import save_model

    from audioclf import __version__

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory}: exists and is not a directory")
    missing = [k for k in ("model", "num_classes", "label_names", "task", "sample_rate", "clip_samples") if k not in info]
    if missing:
        raise HubError(f"model info lacks {', '.join(missing)}")
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "library_name": "audioclf",
        "format_version": FORMAT_VERSION,
        "audioclf_version": __version__,
        "architecture": info["model"],
        "model_settings": info.get("model_settings", {}),
        "num_classes": int(info["num_classes"]),
        "label_names": list(info["label_names"]),
        "task": info["task"],
        "sample_rate": int(info["sample_rate"]),
        "clip_samples": int(info["clip_samples"]),
        "weights": info.get("weights", "model"),
        "training_config": info.get("config", {}),
    }
    # save_model drops duplicate views of shared tensors and writes contiguous copies;
    # load_model restores them, so nothing of the module's state is lost
    save_model(model, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "library": "audioclf"})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    (directory / CARD_FILE).write_text(model_card(config, metrics=metrics, card=card))
    log.info("wrote %s (%s, %d classes)", directory, info["model"], info["num_classes"])
    return directory


def save_bundle_pretrained(
    checkpoint: str | Path, directory: str | Path, *, metrics: dict[str, Any] | None = None, card: dict[str, Any] | None = None
) -> Path:
    """An audioclf checkpoint bundle (a run's ``best.ckpt``) -> audioclf's Hub format in ``directory``."""
    from audioclf.models.bundle import load_bundle_model

    model, info = load_bundle_model(checkpoint)
    return save_pretrained(model, info, directory, metrics=metrics, card=card)


def _yaml_list(key: str, values: list[str]) -> list[str]:
    return [f"{key}:", *(f"- {json.dumps(str(v))}" for v in values)] if values else []


def model_card(config: dict[str, Any], *, metrics: dict[str, Any] | None = None, card: dict[str, Any] | None = None) -> str:
    """The model card (``README.md``) of a directory whose ``config.json`` is ``config``:
    Hub YAML front matter, then what the model is, its metrics, dataset, recipe and usage."""
    card = dict(card or {})
    training = config.get("training_config") or {}
    data = training.get("data") or {}
    store = data.get("store")
    dataset = card.get("dataset") or (Path(store).stem if store else None)
    arch = config["architecture"]
    tags = ["audioclf", "audio-classification", "pytorch", arch, *card.get("tags", [])]
    front = ["---", "library_name: audioclf", "pipeline_tag: audio-classification"]
    front += _yaml_list("tags", list(dict.fromkeys(tags)))
    if card.get("license"):
        front.append(f"license: {json.dumps(str(card['license']))}")
    front += _yaml_list("datasets", list(card.get("datasets", [])))
    front.append("---")

    repo = card.get("repo_id") or "ORG/NAME"
    title = card.get("title") or repo.split("/")[-1]
    task = "multi-label" if config["task"] == "multi_label" else "single-label"
    seconds = config["clip_samples"] / config["sample_rate"]
    lines = [
        *front,
        "",
        f"# {title}",
        "",
        f"An audio classifier trained with audioclf: "
        f"`{arch}`, {task}, {config['num_classes']} classes, {config['sample_rate']} Hz audio in "
        f"{seconds:g} s clips.",
        "",
        "## Usage",
        "",
        "```python",
        "from audioclf.inference import Classifier",
        f'print(Classifier.from_pretrained("hf:{repo}").predict("clip.wav", top_k=5))',
        "```",
        "",
        f"or `audioclf predict hf:{repo} clip.wav`.",
        "",
    ]
    scalars = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars:
        split = (metrics or {}).get("split")
        lines += ["## Metrics", "", f"On the {split} split of {dataset}." if split and dataset else "", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scalars.items()]
        lines.append("")
    lines += ["## Training", ""]
    if dataset:
        lines.append(f"- dataset: {dataset}")
    if training:
        model_cfg = training.get("model") or {}
        lines.append(f"- recipe: run `{training.get('name', 'run')}`, model `{model_cfg.get('name', arch)}`"
                     + (f", starting from `{model_cfg['pretrained']}`" if model_cfg.get("pretrained") else ""))
        lines += ["", "<details><summary>resolved recipe (config.yaml)</summary>", "", "```yaml", _yaml(training), "```", "", "</details>"]
    else:
        lines.append("- recipe: not recorded")
    lines += ["", "## Labels", "", ", ".join(f"`{n}`" for n in config["label_names"]), ""]
    return "\n".join(lines)


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


# --- pushing ----------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a Hub repository id (``ORG/NAME``); a clear error otherwise."""
    if not re.fullmatch(rf"{_NAME}/{_NAME}", repo_id):
        raise HubError(f"{repo_id!r}: not a Hub repository id (expected ORG/NAME)")
    return repo_id


def push_to_hub(
    directory_or_bundle: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload audioclf's Hub format to the Hub repository ``repo_id`` (created if needed).

    ``directory_or_bundle`` is a directory written by :func:`save_pretrained`, or an audioclf
    checkpoint bundle, converted on the way (into a temporary directory). ``revision`` is a
    branch, created from the default branch when missing. Returns the commit's URL.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    source = Path(directory_or_bundle)
    if not source.exists():
        raise FileNotFoundError(f"not found: {source} (expected a directory written by save_pretrained or a checkpoint)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="audioclf-push-") as tmp:
        if source.is_dir():
            folder = source
            if not is_hub_dir(folder):
                raise HubError(f"{folder}: not audioclf's Hub format (config.json with library_name 'audioclf' and {WEIGHTS_FILE})")
        else:
            folder = save_bundle_pretrained(source, Path(tmp) / "model", card={"repo_id": repo_id})
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision is not None:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=str(folder), revision=revision,
                commit_message=commit_message or f"Upload {folder.name} with audioclf",
            )  # fmt: skip
        except HfHubHTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            hint = " (log in with `hf auth login` or set HF_TOKEN to a token that may write there)" if status in (401, 403) else ""
            raise HubError(f"push to {repo_id!r} failed{hint}: {err}") from err
    log.info("pushed %s to %s (%s)", source, repo_id, info.commit_url)
    return str(info.commit_url)
