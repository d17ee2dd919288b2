"""BEATs: golden vectors of iter3+, checkpoint import, padding masks, freezing."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from audioclf.audio.frontends import KaldiFbank
from audioclf.errors import ConfigError
from audioclf.models.beats import FBANK_MEAN, FBANK_STD, BEATs, relative_position_buckets
from audioclf.models.registry import create_model, get_model_info
from tests.golden import load_golden, rule_state_dict

# A small BEATs for everything but the golden test (same code paths, fast on 2 cores).
SMALL = dict(
    embed_dim=32,
    encoder_layers=2,
    encoder_embed_dim=48,
    encoder_ffn_embed_dim=96,
    encoder_attention_heads=4,
    conv_pos=16,
    conv_pos_groups=4,
    num_buckets=32,
    max_distance=64,
)


def _samples(frames: int) -> int:
    return 400 + (frames - 1) * 160


def test_golden_iter3_plus(tmp_path) -> None:
    golden = load_golden("beats_iter3_plus")
    path = tmp_path / "BEATs_iter3_plus_AS2M_rule.pt"
    torch.save({"cfg": golden["config"], "model": rule_state_dict(golden)}, path)
    model = create_model("beats_iter3_plus", 527, pretrained=path).eval()
    assert set(model.state_dict()) == {name for name, _ in golden["state_dict_keys"]}
    with torch.no_grad():
        features = model.forward_tokens(golden["fbank_normalized"])
        logits = model.head(model.forward_features(golden["fbank_normalized"]))
    assert features.shape == (2, 496, 768)
    # measured: features 5.5e-6, logits 3.6e-7
    assert (features - golden["features"]).abs().max() < 1e-3
    assert (logits - golden["logits"]).abs().max() < 1e-3
    torch.testing.assert_close(torch.sigmoid(logits), golden["probs"], atol=1e-4, rtol=0)


def test_frontend_is_scaled_kaldi_fbank_then_normalised() -> None:
    model = create_model("beats_iter3_plus", 3, **SMALL).eval()
    wave = 0.1 * torch.randn(2, _samples(40))
    raw = KaldiFbank(16000, n_mels=128, window="povey", waveform_scale=2.0**15)(wave)
    torch.testing.assert_close(model.frontend.fbank(wave), raw)
    torch.testing.assert_close(model.frontend(wave), (raw - 15.41663) / (2 * 6.55582))
    assert (FBANK_MEAN, FBANK_STD) == (15.41663, 6.55582)
    # the golden file pins the same normalisation
    golden = load_golden("beats_iter3_plus")
    torch.testing.assert_close(model.frontend.norm(golden["fbank_raw"]), golden["fbank_normalized"])


def test_registry_contract() -> None:
    info = get_model_info("beats_iter3_plus")
    assert (info.sample_rate, info.clip_seconds) == (16000, 10.0)
    model = create_model("beats_iter3_plus", 5, **SMALL).eval()
    assert (model.sample_rate, model.clip_samples, model.num_classes) == (16000, 160000, 5)
    wave = torch.randn(2, _samples(33))
    with torch.no_grad():
        assert model(wave).shape == (2, 5)
        assert model.embed(wave).shape == (2, 48)
    with pytest.raises(ConfigError, match="unknown BEATs settings"):
        create_model("beats_iter3_plus", 5, not_a_setting=1)


def test_pretrained_only_checkpoint_keeps_fresh_head(tmp_path, caplog) -> None:
    source = create_model("beats_iter3_plus", 4, **SMALL)
    encoder_only = {k: v for k, v in source.state_dict().items() if not k.startswith("predictor.")}
    cfg = {**SMALL, "input_patch_size": 16, "finetuned_model": False}
    torch.save({"cfg": cfg, "model": encoder_only}, tmp_path / "BEATs_iter3.pt")
    with caplog.at_level(logging.INFO):
        model = create_model(
            "beats_iter3_plus", 10, pretrained=tmp_path / "BEATs_iter3.pt", **SMALL
        )
    assert "head replaced" in caplog.text
    torch.testing.assert_close(model.patch_embedding.weight, source.patch_embedding.weight)
    torch.testing.assert_close(
        model.encoder.pos_conv[0].weight_v, source.encoder.pos_conv[0].weight_v
    )
    assert model.predictor.weight.shape == (10, 48)


def test_finetuned_checkpoint_head_replaced_or_loaded(tmp_path) -> None:
    source = create_model("beats_iter3_plus", 6, **SMALL)
    cfg = {**SMALL, "finetuned_model": True, "predictor_class": 6}
    torch.save({"cfg": cfg, "model": source.state_dict()}, tmp_path / "ft.pt")
    same = create_model("beats_iter3_plus", 6, pretrained=tmp_path / "ft.pt", **SMALL)
    torch.testing.assert_close(same.predictor.weight, source.predictor.weight)
    other = create_model("beats_iter3_plus", 3, pretrained=tmp_path / "ft.pt", **SMALL)
    assert other.predictor.weight.shape == (3, 48)
    torch.testing.assert_close(other.layer_norm.weight, source.layer_norm.weight)


def test_checkpoint_for_other_architecture_is_rejected(tmp_path) -> None:
    source = create_model("beats_iter3_plus", 2, **SMALL)
    cfg = {**SMALL, "encoder_layers": 3, "num_buckets": 64}
    torch.save({"cfg": cfg, "model": source.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="encoder_layers: checkpoint 3 vs model 2.*num_buckets"):
        create_model("beats_iter3_plus", 2, pretrained=tmp_path / "bad.pt", **SMALL)


def test_shared_relative_position_bias() -> None:
    model = create_model("beats_iter3_plus", 2, **SMALL)
    tables = [layer.self_attn.relative_attention_bias for layer in model.encoder.layers]
    assert all(t is tables[0] for t in tables)
    keys = [k for k in model.state_dict() if k.endswith("relative_attention_bias.weight")]
    assert len(keys) == SMALL["encoder_layers"]  # stored under every layer, as published


def test_relative_position_buckets() -> None:
    buckets = relative_position_buckets(
        1000, num_buckets=320, max_distance=800, device=torch.device("cpu")
    )
    assert buckets[0, 0] == 0
    assert buckets[5, 4] == 1 and buckets[4, 5] == 161  # keys after the query use the upper half
    assert buckets[0, 79] == 160 + 79  # exact buckets below num_buckets / 4
    assert buckets[0, 999] == 319 and buckets[999, 0] == 159  # beyond max_distance: last bucket
    row = buckets[0, 1:]
    assert (row[1:] >= row[:-1]).all()  # monotone in distance


def test_padding_mask_matches_unpadded_clip() -> None:
    torch.manual_seed(0)
    model = create_model("beats_iter3_plus", 4, **SMALL).eval()
    short = 0.1 * torch.randn(1, _samples(48))  # 48 frames: exactly 3 time patches
    long = 0.1 * torch.randn(1, _samples(96))
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, long.shape[1] - short.shape[1]))])
    mask = torch.zeros(batch.shape, dtype=torch.bool)
    mask[1, short.shape[1] :] = True
    with torch.no_grad():
        padded = model(batch, padding_mask=mask)
        alone = torch.cat([model(long), model(short)])
        unmasked = model(batch)
        padded_embed = model.embed(batch, padding_mask=mask)
        alone_embed = model.embed(short)
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(padded_embed[1:], alone_embed, atol=1e-4, rtol=1e-4)
    assert (unmasked[1] - alone[1]).abs().max() > 1e-3  # the mask is what makes them equal
    # a clip shorter than one patch in a padded batch still gives finite scores
    mask[1, _samples(5) :] = True
    with torch.no_grad():
        assert torch.isfinite(model(batch, padding_mask=mask)).all()


def test_freeze_encoder_trains_only_the_head() -> None:
    model = create_model("beats_iter3_plus", 3, freeze_encoder=True, **SMALL)
    model.train()
    assert not model.encoder.training and model.predictor.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"predictor.weight", "predictor.bias"}
    model(torch.randn(2, _samples(32))).sum().backward()
    assert model.predictor.weight.grad is not None
    assert all(
        p.grad is None for n, p in model.named_parameters() if not n.startswith("predictor.")
    )


def test_layer_wise_gradient_decay() -> None:
    torch.manual_seed(0)
    wave = torch.randn(2, _samples(32))
    grads = {}
    for ratio in (1.0, 0.5):
        torch.manual_seed(1)
        model = create_model(
            "beats_iter3_plus",
            3,
            encoder_layerdrop=0.0,
            layer_wise_gradient_decay_ratio=ratio,
            **SMALL,
        ).train()
        model(wave).sum().backward()
        grads[ratio] = (
            model.patch_embedding.weight.grad.clone(),
            model.predictor.weight.grad.clone(),
        )
    # everything below the first layer sees the gradient scaled once per layer
    layers = SMALL["encoder_layers"]
    torch.testing.assert_close(grads[0.5][0], grads[1.0][0] * 0.5**layers)
    torch.testing.assert_close(grads[0.5][1], grads[1.0][1])


def test_weight_norm_conv_uses_published_parameterisation() -> None:
    model = create_model("beats_iter3_plus", 2, **SMALL)
    conv = model.encoder.pos_conv[0]
    assert conv.weight_g.shape == (1, 1, SMALL["conv_pos"])
    # at init the weight equals weight_v (g is the norm of v per kernel position)
    x = torch.randn(1, 48, 20)
    direct = torch.nn.functional.conv1d(x, conv.weight_v, conv.bias, padding=8, groups=4)[..., :20]
    torch.testing.assert_close(conv(x), direct, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        conv.weight_g.mul_(2.0)
    torch.testing.assert_close(
        conv(x) - conv.bias[:, None], 2 * (direct - conv.bias[:, None]), atol=1e-5, rtol=1e-5
    )
    assert math.isclose(model.encoder.layers[0].residual_scale, (2 * 2) ** 0.25)


def test_unknown_objects_fall_back_to_generic_loader(tmp_path) -> None:
    source = create_model("beats_iter3_plus", 2, **SMALL)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "plain.pt")
    model = create_model("beats_iter3_plus", 2, pretrained=tmp_path / "plain.pt", **SMALL)
    torch.testing.assert_close(model.predictor.weight, source.predictor.weight)
    assert isinstance(model, BEATs)
