"""trainer.activation_checkpointing: the main blocks of any model are recomputed in the
backward pass, with the same outputs, gradients and batch-norm statistics as without."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from audioclf.config import load_config
from audioclf.models import create_model
from audioclf.models.bundle import load_bundle_model
from audioclf.training.task import enable_activation_checkpointing, main_blocks
from audioclf.training.trainer import train
from tests.training.helpers import make_store

# small settings with the same code paths as the full models
MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "cnn_lite": ({"channels": [8, 16]}, 16000),
    "eat_s": ({"seq_len": 32768, "dropout": 0.2}, 32768),
    "cnn10": ({"clip_seconds": 0.5}, 16000),
    "blocknet": ({"clip_seconds": 1.0}, 22050),
    "crnn": ({"clip_seconds": 1.0}, 22050),
    "ast": ({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "max_length": 64, "hidden_dropout_prob": 0.2}, 10240),
    "beats_iter3_plus": ({"embed_dim": 32, "encoder_layers": 2, "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 96, "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4, "num_buckets": 32, "max_distance": 64, "dropout": 0.2}, 16000),
}


def _step(model: torch.nn.Module, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # same dropout masks in both models
    model.zero_grad()
    out = model(wave)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpointed_blocks_give_the_same_step(name: str) -> None:
    settings, samples = MODELS[name]
    torch.manual_seed(0)
    plain = create_model(name, 4, **settings).train()
    ckpt = copy.deepcopy(plain)
    blocks = enable_activation_checkpointing(ckpt)
    assert blocks == [n for n, _ in main_blocks(plain)] and blocks, f"{name}: no blocks found"
    assert {n for n, _ in plain.named_parameters()} == {n for n, _ in ckpt.named_parameters()}

    # the recomputation happens: each block's layers run twice per training step
    calls = []
    block = dict(ckpt.named_modules())[blocks[0]]
    layer = next(m for m in block.modules() if not list(m.children()) and list(m.parameters()))
    layer.register_forward_hook(lambda *a: calls.append(1))
    wave = 0.1 * torch.randn(2, samples)
    out_a, grads_a = _step(plain, wave)
    out_b, grads_b = _step(ckpt, wave)
    assert len(calls) == 2
    torch.testing.assert_close(out_b, out_a)
    assert grads_a.keys() == grads_b.keys()
    for n in grads_a:
        torch.testing.assert_close(grads_b[n], grads_a[n], rtol=1e-4, atol=1e-6, msg=n)
    # the recomputation does not count the batch twice in batch-norm statistics
    for (n, a), (_, b) in zip(plain.named_buffers(), ckpt.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=n)
    # evaluation runs the plain forward, once
    calls.clear()
    with torch.no_grad():
        ckpt.eval()(wave)
    assert len(calls) == 1


def test_deep_copy_of_a_checkpointed_model_runs_its_own_weights() -> None:
    model = create_model("cnn_lite", 3, channels=[8, 16])
    enable_activation_checkpointing(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    wave = torch.randn(2, 16000)
    assert not torch.equal(model.eval()(wave), twin.eval()(wave))


def test_training_with_activation_checkpointing(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.h5", classes=3)
    config = load_config(None, [
        f"data.store={store}", f"output_dir={tmp_path}", "trainer.activation_checkpointing=true",
        "model.settings={channels: [8, 16]}", "trainer.max_epochs=1", "trainer.progress_bar=false",
        "data.batch_size=4", "task.ema_decay=0.9",
    ])
    res = train(config)
    model, info = load_bundle_model(res.best_checkpoint)  # same keys: the bundle loads
    assert info["model"] == "cnn_lite" and res.global_step > 0
