"""Published weights: the catalog of known checkpoints, and one way to name a model.

A *model source* is any of

* an audioclf checkpoint bundle (``runs/.../checkpoints/best.ckpt``);
* a published checkpoint file: PANNs ``.pth`` (CNN6/10/14 at 32 kHz, and the 16/8 kHz
  CNN14 variants), BEATs ``.pt`` (pre-trained or fine-tuned), EAT ``best_model.pt`` /
  ``chkpnt.pt``, or ESPnet's BEATs classifier (``espnet/BEATs-AS20K``). The architecture is
  recognised from the file's keys and shapes, or named with ``model=`` (``--model NAME``);
* a Hugging Face model directory, or a Hub id ``hf:ORG/REPO[@REV]`` / ``hf:ORG/REPO/FILE[@REV]``
  (through :mod:`audioclf.models.hub`);
* a catalog name (``panns-cnn14``, ``beats-iter3plus-as2m-ft``, ...; ``audioclf models
  --pretrained`` lists them). First use downloads the file into the cache
  (``$AUDIOCLF_CACHE``, else ``$XDG_CACHE_HOME/audioclf``, else ``~/.cache/audioclf``), resumable
  and checksum-verified; Hub-hosted entries use the Hub's own cache. Offline
  (``offline=True``, ``--offline`` or ``HF_HUB_OFFLINE=1``) only the cache is used, and a
  missing file is named.

:func:`resolve_model` turns a source into ``(model in eval mode, info)``, ``info`` being the
bundle info inference needs (model name and settings, label names, task, sample rate, clip
length); ``Classifier(model, info)`` takes it as it is. Label names travel with the weights:
PANNs heads get the AudioSet names in ``class_labels_indices.csv`` order, BEATs heads are
named through the checkpoint's own ``label_dict`` (index -> mid), ESPnet's through its
``config.yaml`` token list, Hugging Face models through ``id2label``.

Published files are read with ``torch.load(weights_only=True)`` (through
:func:`audioclf.models.checkpoints.read_checkpoint_file`): weights as data, never code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.errors import CheckpointError
from audioclf.models.bundle import is_bundle, model_from_bundle
from audioclf.models.checkpoints import extract_state_dict, load_state_into, read_checkpoint_file
from audioclf.models.registry import cache_dir, create_model, get_model_info, list_models
from audioclf.registry import Registry

log = logging.getLogger(__name__)


# --- the catalog ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainedEntry:
    """One set of published weights (timm ``pretrained_cfg`` style).

    ``source`` is a download URL or a Hub id (``hf:ORG/REPO[/FILE][@REV]``). ``checksum`` is
    ``"<algo>:<hex>"`` as the publisher gives it, or None where none is published (then the
    downloader records the SHA-256 of the first download and checks it on every later use).
    ``labels`` says how the output names are found: ``audioset`` (the published
    ``class_labels_indices.csv`` order), ``label_dict`` (the checkpoint's index -> mid
    map), ``id2label`` (a transformers config) or ``token_list`` (ESPnet's config.yaml).
    """

    name: str
    architecture: str
    source: str
    licence: str
    labels: str
    metric: str
    paper: str
    filename: str | None = None
    checksum: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def hub(self) -> bool:
        return self.source.startswith("hf:")

    def checksum_text(self) -> str:
        if self.checksum:
            return self.checksum
        if self.hub:
            return "Hub (file hashes checked by huggingface_hub)"
        return "none published (SHA-256 recorded on first download)"


_CATALOG: Registry[PretrainedEntry] = Registry("pretrained model")


def register_pretrained(entry: PretrainedEntry) -> PretrainedEntry:
    """Add ``entry`` to the catalog under its name (a taken name is an error)."""
    return _CATALOG.add(entry.name, entry)


def list_pretrained() -> list[str]:
    """Catalog names, in registration order."""
    return _CATALOG.names()


def get_pretrained(name: str) -> PretrainedEntry:
    """The catalog entry ``name``; :class:`ConfigError` listing the catalog if there is none."""
    return _CATALOG.get(name)


_PANNS_PAPER = "Kong et al. 2020, PANNs (arXiv:1912.10211), Table"
_ZENODO = "https://zenodo.org/record/3987831/files/"
_BEATS_BLOB = "https://valle.blob.core.windows.net/share/BEATs/"
# the read-only shared-access signature the BEATs README publishes for its files
_BEATS_SAS = ("?sv=2020-08-04&st=2023-03-01T07%3A51%3A05Z&se=2033-03-02T07%3A51%3A00Z&sr=c&sp=rl"
              "&sig=QJXmSJG9DbMKf48UDIU1MfzIro8HQOf3sqlNXiflY1I%3D")
_PANNS_16K = {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "fmax": 8000.0}

for _entry in (
    PretrainedEntry(
        "panns-cnn14", "cnn14", _ZENODO + "Cnn14_mAP%3D0.431.pth?download=1", filename="Cnn14_mAP=0.431.pth",
        checksum="md5:541141fa2ee191a88f24a3219fff024e", licence="MIT (audioset_tagging_cnn; weights on Zenodo)",
        labels="audioset", metric="AudioSet mAP 0.431", paper=_PANNS_PAPER + " 3",
    ),
    PretrainedEntry(
        "panns-cnn10", "cnn10", _ZENODO + "Cnn10_mAP%3D0.380.pth?download=1", filename="Cnn10_mAP=0.380.pth",
        checksum="md5:bfb1f1f9968938fa8ef4012b8471f5f6", licence="MIT (audioset_tagging_cnn; weights on Zenodo)",
        labels="audioset", metric="AudioSet mAP 0.380", paper=_PANNS_PAPER + " 3",
    ),
    PretrainedEntry(
        "panns-cnn6", "cnn6", _ZENODO + "Cnn6_mAP%3D0.343.pth?download=1", filename="Cnn6_mAP=0.343.pth",
        checksum="md5:e25e26b84585b14c7754c91e48efc9be", licence="MIT (audioset_tagging_cnn; weights on Zenodo)",
        labels="audioset", metric="AudioSet mAP 0.343", paper=_PANNS_PAPER + " 3",
    ),
    PretrainedEntry(
        "panns-cnn14-16k", "cnn14", _ZENODO + "Cnn14_16k_mAP%3D0.438.pth?download=1",
        filename="Cnn14_16k_mAP=0.438.pth", licence="MIT (audioset_tagging_cnn; weights on Zenodo)",
        labels="audioset", metric="AudioSet mAP 0.438 (16 kHz input)", paper=_PANNS_PAPER + " 6 (sampling rate)",
        settings=_PANNS_16K, notes="no checksum published for this file: verified by size/recorded SHA-256 only",
    ),
    PretrainedEntry(
        "beats-iter3plus-as2m-ft", "beats_iter3_plus",
        _BEATS_BLOB + "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt" + _BEATS_SAS,
        filename="BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt", licence="MIT (microsoft/unilm)",
        labels="label_dict", metric="AudioSet-2M mAP 48.6 (BEATs_iter3+)",
        paper="Chen et al. 2022, BEATs (arXiv:2212.09058), Table 3",
        notes="no checksum published: the SHA-256 of the first download is recorded and checked",
    ),
    PretrainedEntry(
        "ast-audioset", "ast", "hf:MIT/ast-finetuned-audioset-10-10-0.4593", licence="BSD-3-Clause (Hub model card)",
        labels="id2label", metric="AudioSet mAP 0.459 (single model)",
        paper="Gong et al. 2021, AST (arXiv:2104.01778), Table 1",
    ),
    PretrainedEntry(
        "espnet-beats-as20k", "beats_iter3_plus", "hf:espnet/BEATs-AS20K",
        licence="per the Hub model card (ESPnet code: Apache-2.0)", labels="token_list",
        metric="AS-20K mAP 37.5", paper="ESPnet egs2/as20k/cls1 recipe (BEATs iter3+ fine-tuned on AS-20K)",
        notes="ESPnet's classifier (BEATs encoder + linear decoder); module names mapped onto audioclf's BEATs",
    ),
):
    register_pretrained(_entry)


def _offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_pretrained(name: str, *, offline: bool = False) -> Path:
    """The local file (or Hub snapshot directory) of catalog entry ``name``, downloaded on
    first use; offline, only the cache is looked at."""
    entry = get_pretrained(name)
    if entry.hub:
        from audioclf.models.hub import hub_download

        return hub_download(entry.source, offline=_offline(offline))
    assert entry.filename is not None, entry
    dest = cache_dir() / "pretrained" / entry.filename
    if _offline(offline) and not dest.exists():
        raise FileNotFoundError(
            f"{name}: offline and not in the cache: {dest} is missing (run once online, or download "
            f"{entry.source} to that path by hand)"
        )
    if _verified(dest, entry):
        return dest
    from audioclf.data.download import download

    log.info("%s: %s", name, "verifying the cached file" if dest.exists() else f"downloading {entry.source}")
    download(entry.source, dest, checksum=entry.checksum)
    _stamp(dest, entry)
    return dest


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _stamp(dest: Path, entry: PretrainedEntry) -> None:
    """Remember that ``dest`` (as it is now: size, mtime) passed verification, so later uses
    need not hash hundreds of megabytes again."""
    st = dest.stat()
    _stamp_path(dest).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checksum": entry.checksum}))


def _verified(dest: Path, entry: PretrainedEntry) -> bool:
    try:
        stamp = json.loads(_stamp_path(dest).read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checksum": entry.checksum}


# --- recognising a published file -----------------------------------------------------------


@dataclass
class Recognised:
    """What a published file was recognised as: the registered model to build (with these
    settings and class count), the checkpoint object in the layout that model's importer
    reads, and the names and task of its outputs (None: the file does not say)."""

    kind: str
    architecture: str
    settings: dict[str, Any]
    num_classes: int
    checkpoint: Any
    label_names: list[str] | None = None
    task: str = "multi_label"
    head: bool = True


Recogniser = Callable[[Any, Path], "Recognised | None"]
_RECOGNISERS: Registry[Recogniser] = Registry("checkpoint recogniser")


def register_recogniser(kind: str) -> Callable[[Recogniser], Recogniser]:
    """Add a recogniser ``fn(checkpoint object, path) -> Recognised | None`` (None: not mine)."""
    return _RECOGNISERS.register(kind)


def recognise(obj: Any, path: Path) -> Recognised | None:
    """The first recogniser that claims ``obj`` (in registration order); None when none does."""
    for _, fn in _RECOGNISERS.items():
        found = fn(obj, path)
        if found is not None:
            return found
    return None


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


# PANNs frontends by STFT size: the published 32 kHz models and the 16/8 kHz CNN14s
_PANNS_FRONTENDS = {
    1024: {},
    512: _PANNS_16K,
    256: {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "fmax": 4000.0},
}


@register_recogniser("panns")
def _recognise_panns(obj: Any, path: Path) -> Recognised | None:
    state = _tensor_dict(obj.get("model") if isinstance(obj, Mapping) else None) or _tensor_dict(obj)
    if state is None or "spectrogram_extractor.stft.conv_real.weight" not in state:
        return None
    blocks = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"conv_block(\d+)\.conv1\.weight", k)))
    double = "conv_block1.conv2.weight" in state
    arch = {(6, True): "cnn14", (4, True): "cnn10", (4, False): "cnn6"}.get((len(blocks), double))
    if arch is None:
        raise CheckpointError(f"{path}: a PANNs checkpoint with {len(blocks)} {'double' if double else 'single'} conv "
                         "blocks: not CNN6, CNN10 or CNN14 (the architectures audioclf implements)")
    n_fft = int(state["spectrogram_extractor.stft.conv_real.weight"].shape[-1])
    if n_fft not in _PANNS_FRONTENDS:
        raise CheckpointError(f"{path}: PANNs frontend with a {n_fft}-point STFT; known: {sorted(_PANNS_FRONTENDS)}")
    settings = dict(_PANNS_FRONTENDS[n_fft])
    n_mels = int(state["logmel_extractor.melW"].shape[1])
    if n_mels != 64:
        settings["n_mels"] = n_mels
    num_classes = int(state["fc_audioset.weight"].shape[0])
    labels = _audioset_or_none(num_classes)
    return Recognised("panns", arch, settings, num_classes, obj, labels, "multi_label")


@register_recogniser("beats")
def _recognise_beats(obj: Any, path: Path) -> Recognised | None:
    if not (isinstance(obj, Mapping) and "cfg" in obj and isinstance(obj.get("model"), Mapping)):
        return None
    state = obj["model"]
    if "patch_embedding.weight" not in state:
        return None
    cfg = obj["cfg"] if isinstance(obj["cfg"], Mapping) else vars(obj["cfg"])
    settings = _beats_settings(cfg)
    head = "predictor.weight" in state
    num_classes = int(state["predictor.weight"].shape[0]) if head else int(cfg.get("predictor_class") or 527)
    labels = None
    if head and obj.get("label_dict") is not None:
        from audioclf.models.labels import names_from_label_dict

        labels = names_from_label_dict(obj["label_dict"], num_classes, source=str(path))
    return Recognised("beats", "beats_iter3_plus", settings, num_classes, obj, labels, "multi_label", head=head)


def _beats_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The BEATsConfig fields of a checkpoint's ``cfg`` that differ from audioclf's defaults."""
    from audioclf.models.beats import BEATsConfig

    default = BEATsConfig()
    return {f.name: cfg[f.name] for f in fields(BEATsConfig) if f.name in cfg and cfg[f.name] != getattr(default, f.name)}


@register_recogniser("eat")
def _recognise_eat(obj: Any, path: Path) -> Recognised | None:
    if not isinstance(obj, Mapping):
        return None
    state = _tensor_dict(obj.get("model_dict")) or _tensor_dict(obj)
    if state is None:
        return None
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "tf.pos_embed" not in state or "start.1.weight" not in state:
        return None
    nf = int(state["start.1.weight"].shape[0])
    embed_dim = int(state["tf.pos_embed"].shape[2])
    tokens = int(state["tf.pos_embed"].shape[1]) - 1  # the class token takes one position
    n_layers = len({m.group(1) for k in state if (m := re.match(r"tf\.transformer_enc\.layers\.(\d+)\.", k))})
    ffn = int(state["tf.transformer_enc.layers.0.linear1.weight"].shape[0])
    factors = [int(state[k].shape[2]) - 1 for k in sorted(
        (k for k in state if re.fullmatch(r"down\.\d+\.down\.1\.weight", k)), key=lambda k: int(k.split(".")[1]))]
    num_classes = int(state["tf.fc.weight"].shape[0])
    # sizes of the paper's Table 1 (the head count, not in the weights, comes with the variant)
    variants = {(16, 128): "eat_s", (32, 256): "eat_m"}
    if (nf, embed_dim) not in variants:
        raise CheckpointError(f"{path}: an EAT checkpoint with nf={nf}, embed_dim={embed_dim}: not EAT-S (16, 128) "
                         "or EAT-M (32, 256); name the model with --model and its settings in a recipe")
    arch = variants[(nf, embed_dim)]
    stride = math.prod(factors) * 4
    # 16 kHz Speech Commands models downsample by 4 4 4; the 22.05 kHz ones by 4 4 4 4
    sample_rate = 16000 if len(factors) == 3 else 22050
    settings: dict[str, Any] = {"factors": factors, "seq_len": tokens * stride, "sample_rate": sample_rate}
    if n_layers != {"eat_s": 4, "eat_m": 6}[arch]:
        settings["n_layers"] = n_layers
    if ffn != {"eat_s": 512, "eat_m": 2048}[arch]:
        settings["dim_feedforward"] = ffn
    labels = _audioset_or_none(num_classes)
    if labels is None:
        log.info("%s: EAT checkpoints carry no label names; outputs are named class_0 .. class_%d", path, num_classes - 1)
    task = "multi_label" if labels is not None else "single_label"
    return Recognised("eat", arch, settings, num_classes, obj, labels, task)


# ESPnet keys that are not weights of the model audioclf builds: frozen helper convolutions
# BEATs' ESPnet port uses for padding masks
_ESPNET_DROPPED = ("encoder.patch_embedding_pad.weight", "encoder.raw2fbank_pad.weight")


@register_recogniser("espnet")
def _recognise_espnet(obj: Any, path: Path) -> Recognised | None:
    state = _tensor_dict(obj.get("model") if isinstance(obj, Mapping) and "cfg" not in obj else None) or _tensor_dict(obj)
    if state is None or "encoder.patch_embedding.weight" not in state or "decoder.linear_out.weight" not in state:
        return None
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in state.items():
        if k in _ESPNET_DROPPED:
            continue
        if k.startswith("decoder.linear_out."):
            mapped["predictor." + k[len("decoder.linear_out."):]] = v
        elif k.startswith("encoder.") and not k.startswith(("encoder.layer_weights", "encoder.downsample_conv",
                                                             "encoder.conformer_adapter", "encoder.cross_embed")):
            mapped[k[len("encoder."):]] = v
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f"{path}: ESPnet BEATs checkpoint with modules audioclf's BEATs does not have: "
                         f"{', '.join(unknown[:6])} (weighted layers, downsampling or adapters are not supported)")
    cfg = _espnet_beats_cfg(mapped)
    num_classes = int(mapped["predictor.weight"].shape[0])
    config = _espnet_config(path)
    labels = None
    task = "multi_label"
    if config:
        pooling = (config.get("decoder_conf") or {}).get("pooling", "mean")
        if pooling != "mean":
            raise CheckpointError(f"{path}: ESPnet decoder pooling {pooling!r}; audioclf's BEATs head averages (mean)")
        # ESPnet token lists may carry special symbols (<blank>, <unk>, ...) besides the classes
        tokens = [str(t) for t in config.get("token_list") or [] if not re.fullmatch(r"<[^>]*>", str(t))]
        if len(tokens) == num_classes:
            from audioclf.models.labels import names_from_tokens

            labels = names_from_tokens(tokens)
        else:
            log.warning("%s: config.yaml lists %d class tokens for %d outputs; outputs are named class_0 ...",
                        path, len(tokens), num_classes)
        if (config.get("model_conf") or {}).get("classification_type") == "multi-class":
            task = "single_label"
    else:
        log.warning("%s: no ESPnet config.yaml beside it; its outputs are named class_0 .. class_%d", path, num_classes - 1)
    published = {"cfg": {**cfg, "finetuned_model": True, "predictor_class": num_classes}, "model": mapped}
    return Recognised("espnet", "beats_iter3_plus", _beats_settings(cfg), num_classes, published, labels, task)


def _espnet_beats_cfg(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """BEATs ``cfg`` entries read off the shapes of an (ESPnet) BEATs state dict."""
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    dim = int(state["encoder.layers.0.fc1.weight"].shape[1])
    cfg: dict[str, Any] = {
        "input_patch_size": int(state["patch_embedding.weight"].shape[-1]),
        "embed_dim": int(state["patch_embedding.weight"].shape[0]),
        "conv_bias": "patch_embedding.bias" in state,
        "encoder_layers": len(layers),
        "encoder_embed_dim": dim,
        "encoder_ffn_embed_dim": int(state["encoder.layers.0.fc1.weight"].shape[0]),
        "encoder_attention_heads": int(state["encoder.layers.0.self_attn.grep_a"].shape[1]),
        "conv_pos": int(state["encoder.pos_conv.0.weight_v"].shape[-1]),
        "conv_pos_groups": dim // int(state["encoder.pos_conv.0.weight_v"].shape[1]),
        "num_buckets": int(state["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape[0]),
    }
    return cfg


def _espnet_config(path: Path) -> dict[str, Any] | None:
    """ESPnet's ``config.yaml`` for a checkpoint: beside it, or one or two levels up (the Hub
    repos keep ``exp/<run>/config.yaml`` next to the weights)."""
    import yaml

    for d in (path.parent, path.parent.parent, path.parent.parent.parent):
        for cand in (d / "config.yaml", *sorted(d.glob("exp/*/config.yaml"))):
            if cand.is_file():
                try:
                    data = yaml.safe_load(cand.read_text(encoding="utf-8"))
                except yaml.YAMLError as err:
                    raise CheckpointError(f"{cand}: unreadable ESPnet config ({err})") from err
                if isinstance(data, dict) and ("token_list" in data or "encoder" in data):
                    return data
    return None


def _audioset_or_none(num_classes: int) -> list[str] | None:
    from audioclf.models.labels import AUDIOSET_NUM_CLASSES, audioset_names

    return audioset_names() if num_classes == AUDIOSET_NUM_CLASSES else None


# --- building the model ---------------------------------------------------------------------


def load_published(
    path: str | Path, *, model: str | None = None, obj: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A published checkpoint file -> (model in eval mode, info).

    The architecture is recognised from the file (see the recognisers above) or named by
    ``model``; the weights are loaded through the model's own importer, exactly as
    ``create_model(name, ..., pretrained=path)`` does.
    """
    path = Path(path)
    obj = read_checkpoint_file(path) if obj is None else obj
    found = recognise(obj, path)
    if found is None and model is None:
        kinds = ", ".join(_RECOGNISERS)
        raise CheckpointError(
            f"{path}: not an audioclf checkpoint and not a published layout audioclf recognises ({kinds}); "
            f"top-level keys: {_keys(obj)}. Name the architecture with --model NAME (model= in Python); "
            f"registered models: {', '.join(list_models())}"
        )
    if found is not None and model is not None and model != found.architecture:
        if get_model_info(model).family != get_model_info(found.architecture).family:
            raise CheckpointError(f"{path}: --model {model} was given, but the file is a {found.kind} checkpoint "
                             f"({found.architecture})")
        found.architecture = model
    if found is None:
        assert model is not None
        found = _as_named(obj, path, model)
    net = create_model(found.architecture, found.num_classes, **found.settings)
    state = extract_state_dict(found.checkpoint, net)
    load_state_into(net, state, source=str(path))
    labels = found.label_names or [f"class_{i}" for i in range(found.num_classes)]
    info: dict[str, Any] = {
        "model": found.architecture,
        "model_settings": found.settings,
        "num_classes": found.num_classes,
        "label_names": labels,
        "task": found.task,
        "sample_rate": int(net.sample_rate),
        "clip_samples": int(net.clip_samples),
        "weights": "published",
        "source": str(path),
        "format": found.kind,
        "head": found.head,
    }
    return net.eval(), info


def _as_named(obj: Any, path: Path, model: str) -> Recognised:
    """An unrecognised file taken as the named model: its class count read off the head."""
    probe = create_model(model, 1)
    state = extract_state_dict(obj, probe)
    heads = [k for k in state if k.startswith(tuple(getattr(probe, "head_prefixes", ()))) and k.endswith("weight")]
    num_classes = int(state[heads[0]].shape[0]) if heads else 1
    return Recognised("named", model, {}, num_classes, obj, _audioset_or_none(num_classes), "multi_label",
                      head=bool(heads))


def _keys(obj: Any, n: int = 8) -> str:
    if not isinstance(obj, Mapping):
        return type(obj).__name__
    keys = [str(k) for k in obj]
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "") if keys else "(none)"


def load_checkpoint_source(path: str | Path, *, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint file: an audioclf bundle, else a published checkpoint."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    if is_bundle(obj):
        net, info = model_from_bundle(obj, source=str(path))
        if model is not None and model != info["model"]:
            raise CheckpointError(f"{path}: an audioclf checkpoint of {info['model']}, not --model {model}")
        return net, info
    return load_published(path, model=model, obj=obj)


def _load_local(path: Path, model: str | None, device: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    if path.is_dir():
        weights = _single_checkpoint(path)
        if weights is not None:
            net, info = load_checkpoint_source(weights, model=model)
        else:
            from audioclf.models.hub import load_model_dir

            net, info = load_model_dir(path, model=model, device=device)
    else:
        net, info = load_checkpoint_source(path, model=model)
    return net.to(device).eval(), info


def _single_checkpoint(directory: Path) -> Path | None:
    """A directory that is no model directory but holds exactly one checkpoint file (an ESPnet
    Hub repo: ``exp/<run>/*.pth``) -> that file; None otherwise."""
    if (directory / "config.json").is_file():
        return None  # a transformers or audioclf-format model directory
    found = [p for p in directory.rglob("*") if p.suffix in (".pth", ".pt", ".ckpt") and p.is_file()]
    best = [p for p in found if "best" in p.name] or found
    return best[0] if len(best) == 1 else None


def resolve_model(
    source: str | Path,
    *,
    model: str | None = None,
    offline: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Any model source (see the module docstring) -> (model in eval mode on ``device``, info).

    ``model`` names the architecture of a file that is not recognised (or checks the one
    recognised); ``offline`` uses only the caches.
    """
    text = str(source)
    if text.startswith("hf:"):
        from audioclf.models.hub import hub_download

        net, info = _load_local(hub_download(text, offline=_offline(offline)), model, device)
        info.setdefault("source", text)
        return net, info
    path = Path(text).expanduser()
    if path.exists():
        return _load_local(path, model, device)
    if text in _CATALOG:
        entry = _CATALOG.get(text)
        net, info = _load_local(fetch_pretrained(text, offline=offline), model or entry.architecture, device)
        info["source"] = text
        return net, info
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin", ".safetensors") or os.sep in text:
        raise FileNotFoundError(f"checkpoint not found: {path} (a model source is a file, a directory, a catalog "
                                f"name ({', '.join(_CATALOG.names())}) or hf:ORG/REPO[@REV])")
    raise FileNotFoundError(
        f"model source {text!r}: no such file or directory, and not a catalog name "
        f"({', '.join(_CATALOG.names())}) or a Hub id (hf:ORG/REPO[@REV])"
    )


def is_model_source_name(spec: str) -> bool:
    """Whether ``spec`` names a model by catalog name or Hub id rather than by path."""
    return spec.startswith("hf:") or (spec in _CATALOG and not Path(spec).exists())
