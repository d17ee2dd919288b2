"""Every recipe in configs/ runs: smoke-trained for a step or two on a tiny store.

The tiny store has what the recipe's dataset has where it matters to the code: the task
type (single/multi-label), the class count, the sample rate the model wants, and the
recipe's protocol (its folds, or its split names). Models are shrunk only where the full
size would take more than a few seconds per step on a laptop CPU. Recipes that start from
a published checkpoint get a stand-in file in the published layout (so the loading path
runs); the ESC-50 block network starts from a smoke run of the UrbanSound8K pretraining
recipe, found through its own ``runs/us8k-blocknet-pretrain-*`` glob.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from audioclf.config import Config, load_config
from audioclf.models import create_model
from audioclf.models.bundle import read_bundle
from audioclf.training.trainer import train
from tests.training.helpers import make_store

ROOT = Path(__file__).resolve().parent.parent
# configs/defaults/ holds the default recipes for user data (tests/training/test_defaults.py)
RECIPES = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "defaults")
RECIPE_IDS = [str(p.relative_to(ROOT / "configs")) for p in RECIPES]

# what the real datasets are like: label count, task type, folds
DATASETS: dict[str, dict[str, Any]] = {
    "esc50": {"classes": 50, "folds": 5},
    "urbansound8k": {"classes": 10, "folds": 10},
    "speech_commands": {"classes": 35},
    "audioset": {"classes": 527, "multi_label": True},
}

# Only where a step at full size takes more than a few seconds on 2 CPU cores.
SHRINK: dict[str, dict[str, Any]] = {
    # 1.5 s clips instead of 4-10 s (the shortest the four-stage EAT takes); Speech
    # Commands' 16384-sample recipe is already short
    "eat_s": {"seq_len": 32768},
    "eat_m": {"seq_len": 32768},
    "cnn14": {"clip_seconds": 1.0},
    "ast": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128, "max_length": 128},
    "beats_iter3_plus": {
        "clip_seconds": 1.0, "embed_dim": 32, "encoder_layers": 2, "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 96,
        "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4, "num_buckets": 32, "max_distance": 64,
    },
}


def test_every_dataset_folder_is_known() -> None:
    assert RECIPES, "no recipes in configs/"
    for p in RECIPES:
        assert p.parent.name in DATASETS, f"{p}: unknown dataset folder; add it to DATASETS"


@pytest.mark.parametrize("path", RECIPES, ids=RECIPE_IDS)
def test_recipe_header_cites_seed_and_target(path: Path) -> None:
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header).lower()
    assert "seed 00" in text, f"{path}: the header must name the seed it reproduces"
    assert "target:" in text, f"{path}: the header must state the published figure it targets"
    assert "data:" in text, f"{path}: the header must say how to prepare its store"


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("settings", "augment", "spec_augment", "methods", "layer_lr"):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("path", RECIPES, ids=RECIPE_IDS)
def test_recipe_holds_only_what_differs_from_defaults(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    defaults = _leaves(Config().to_dict())
    resolved = _leaves(load_config(path).to_dict())
    for key in _leaves(raw):
        assert resolved[key] != defaults[key], f"{path}: {key} repeats the default {defaults[key]!r}"
    assert str(raw["data"]["store"]).startswith("data/"), "stores live under data/ by default"


# --- the smoke runs ---------------------------------------------------------------------


def _published_standin(name: str, settings: dict[str, Any], dest: Path) -> Path:
    """A checkpoint in the published layout of ``name`` (PANNs .pth, BEATs .pt, Hugging
    Face AST directory) with AudioSet's 527-class head, for recipes that start from one."""
    torch.manual_seed(1)
    model = create_model(name, 527, **settings)
    if name == "cnn14":
        inverse = {ours: theirs for theirs, ours in model.published_frontend_keys}
        torch.save({"model": {inverse.get(k, k): v for k, v in model.state_dict().items()}}, dest)
        return dest
    if name == "beats_iter3_plus":
        cfg = {k: v for k, v in settings.items() if k != "clip_seconds"}
        torch.save({"cfg": {**cfg, "finetuned_model": True, "predictor_class": 527}, "model": model.state_dict()}, dest)
        return dest
    if name == "ast":
        from transformers import ASTFeatureExtractor

        model.ast.save_pretrained(dest)
        ASTFeatureExtractor(max_length=settings["max_length"]).save_pretrained(dest)
        return dest
    raise AssertionError(f"no published stand-in for {name}")


def smoke_overrides(path: Path, work: Path) -> list[str]:
    """Overrides that point ``path`` at a tiny store made for it and keep the run short."""
    config = load_config(path)
    dataset = DATASETS[path.parent.name]
    name = config.model.name
    shrink = {k: v for k, v in SHRINK.get(name, {}).items() if not (k == "seq_len" and config.model.settings.get(k, v + 1) <= v)}
    settings = {**config.model.settings, **shrink}
    model = create_model(name, dataset["classes"], **settings)
    d = config.data
    seconds = min(model.clip_samples / model.sample_rate, 1.0)
    folds = dataset.get("folds") if d.fold is not None else None
    store = make_store(
        work / f"{path.stem}.h5", classes=dataset["classes"], used=2, sample_rate=int(model.sample_rate),
        seconds=seconds, clips_per_class=folds or 6, multi_label=dataset.get("multi_label", False), folds=folds,
        splits=(d.train_split, d.val_split, d.test_split),
    )
    out = [
        f"data.store={store}", f"output_dir={work / 'runs'}", "data.batch_size=2", "data.eval_batch_size=4",
        "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
    ]
    out += [f"model.settings.{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in shrink.items()]
    if folds:
        out.append("data.val_fraction=0.25")  # a clip per class from the training folds
    if config.trainer.precision == "16-mixed" and not torch.cuda.is_available():
        out.append("trainer.precision=32")  # fp16 autocast needs a GPU
    pretrained = config.model.pretrained
    if pretrained and glob.has_magic(pretrained):
        # a chained recipe: smoke-run the recipe whose runs the glob picks, in work/runs
        source = next(p for p in RECIPES if f"runs/{load_config(p).name}-" in pretrained)
        train(load_config(source, smoke_overrides(source, work)))
        out.append(f"model.pretrained={work / pretrained}")
    elif pretrained:
        out.append(f"model.pretrained={_published_standin(name, settings, work / Path(pretrained).name)}")
    return out


@pytest.mark.parametrize("path", RECIPES, ids=RECIPE_IDS)
def test_recipe_smoke_run(path: Path, tmp_path: Path) -> None:
    config = load_config(path, smoke_overrides(path, tmp_path))
    res = train(config)
    assert res.global_step == 2, "two optimiser steps (trainer.limit_train_batches=2)"
    assert res.last_checkpoint is not None and res.last_checkpoint.exists()
    _, info = read_bundle(res.last_checkpoint)
    assert info["model"] == config.model.name and info["num_classes"] == DATASETS[path.parent.name]["classes"]
    assert info["task"] == ("multi_label" if DATASETS[path.parent.name].get("multi_label") else "single_label")
    if config.data.test_split is not None or config.data.fold is not None:
        assert res.test_metrics and res.test_metrics["clips"] > 0
    saved = load_config(res.run_dir / "config.yaml")
    assert saved.model.name == config.model.name and saved.task == config.task
