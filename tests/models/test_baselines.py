"""Seed-003 baselines: piczak_cnn, vgg_like, crnn, simple_cnn (shapes, training step, head
replacement, sizes that follow the clip, fixed-length checks, input helpers)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audioclf.models import create_model
from audioclf.models.baselines import standardize, time_deltas

# 8 kHz, 64-sample hop: small maps that train in milliseconds
MEL = dict(sample_rate=8000, n_fft=256, hop_length=64)
TINY = {
    "piczak_cnn": dict(MEL, clip_seconds=1.0, n_mels=60, filters=8, hidden=32),
    "vgg_like": dict(MEL, clip_seconds=0.5, n_mels=32, stages=[[8, 1], [16, 2]]),
    "crnn": dict(MEL, clip_seconds=0.5, n_mels=32, channels=[8, 16], hidden=12),
    "simple_cnn": dict(MEL, clip_seconds=0.5, n_mels=32, hidden=16),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_embed_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **TINY[name])
    assert model.sample_rate == 8000
    assert model.clip_samples == int(TINY[name]["clip_seconds"] * 8000)
    wave = torch.randn(3, model.clip_samples)
    logits = model(wave)
    assert logits.shape == (3, 4)
    head = dict(model.named_modules())[model.head_prefixes[0].rstrip(".")]
    assert model.embed(wave).shape == (3, head.in_features)
    F.cross_entropy(logits, torch.tensor([0, 1, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TINY))
def test_other_class_count_replaces_only_the_head(name, tmp_path):
    source = create_model(name, num_classes=3, **TINY[name])
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict()}, path)
    model = create_model(name, num_classes=7, pretrained=path, **TINY[name])
    prefix = model.head_prefixes[0]
    src = source.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            assert value.shape[0] == 7, key
        else:
            assert torch.equal(value, src[key]), key


def test_simple_cnn_reproduces_the_seed_sizes():
    # 4 s at 22.05 kHz, hop 512, 64 bands: 173 frames -> 21 x 8 after three 2x2 pools
    model = create_model("simple_cnn", num_classes=10)
    assert model.fc1.in_features == 64 * 21 * 8 == 10752
    assert sum(p.numel() for p in model.parameters()) == 1_400_970
    assert [c.out_channels for c in (model.conv1, model.conv2, model.conv3)] == [16, 32, 64]
    assert model.head.dropout.p == 0.3 and model.fc1.out_features == 128


def test_simple_cnn_fc1_follows_the_clip_length():
    # 2 s: 44100 // 512 + 1 = 87 frames -> 43 -> 21 -> 10
    model = create_model("simple_cnn", num_classes=10, clip_seconds=2.0)
    assert model.fc1.in_features == 64 * 10 * 8
    assert model(torch.randn(1, model.clip_samples)).shape == (1, 10)


def test_piczak_cnn_default_layout():
    model = create_model("piczak_cnn", num_classes=50)
    conv1, conv2 = model.features[0], model.features[3]
    assert conv1.in_channels == 2  # log-mel and deltas
    assert (conv1.out_channels, conv1.kernel_size) == (80, (6, 57))  # 57 bands x 6 frames
    assert (conv2.out_channels, conv2.kernel_size) == (80, (3, 1))
    assert model.features[2].kernel_size == (3, 4) and model.features[2].stride == (3, 1)
    # 5 s at 22.05 kHz, hop 512: 216 frames -> 211 -> 70 -> 68 -> 22, and 60 - 56 - 3 = 1 band
    assert model.dense[0].in_features == 80 * 22 * 1
    assert model.dense[0].out_features == model.dense[3].out_features == 5000
    assert model.head.in_features == 5000


def test_piczak_cnn_without_deltas_takes_one_channel():
    model = create_model("piczak_cnn", num_classes=2, deltas=False, **TINY["piczak_cnn"])
    assert model.features[0].in_channels == 1
    assert model(torch.randn(2, model.clip_samples)).shape == (2, 2)


@pytest.mark.parametrize("name", ["piczak_cnn", "simple_cnn"])
def test_fixed_size_models_reject_other_lengths(name):
    model = create_model(name, num_classes=2, **TINY[name])
    with pytest.raises(
        ValueError, match=rf"shape \(batch, {model.clip_samples}\).*got shape \(2, 100\)"
    ):
        model(torch.randn(2, 100))


@pytest.mark.parametrize("name", ["vgg_like", "crnn"])
def test_globally_pooled_models_take_any_length(name):
    model = create_model(name, num_classes=2, **TINY[name]).eval()
    for samples in (model.clip_samples, 2 * model.clip_samples + 77):
        assert model(torch.randn(2, samples)).shape == (2, 2)


def test_crnn_reads_the_map_as_a_sequence():
    model = create_model("crnn", num_classes=2, **TINY["crnn"])
    # 16 channels x (32 bands / 4) per time step into a bidirectional GRU of 12 units
    assert model.gru.input_size == 16 * 8 and model.gru.bidirectional
    assert model.head.in_features == 2 * 12


@pytest.mark.parametrize(
    "name, bad, message",
    [
        ("piczak_cnn", dict(n_mels=40), "needs n_mels >= 60"),
        ("vgg_like", dict(stages=[[8, 0]]), r"stages\[0\] must be \[channels, convs\]"),
        ("crnn", dict(n_mels=2), "need n_mels >= 4"),
        ("simple_cnn", dict(n_mels=4), "needs >= 8 frames and bands"),
    ],
)
def test_bad_settings_are_clear_errors(name, bad, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, num_classes=2, **{**TINY[name], **bad})


def test_time_deltas_regression_slope():
    t = torch.arange(20, dtype=torch.float32)
    ramp = (3.0 * t)[None, :, None].expand(2, 20, 5)  # (B, T, F), slope 3 per frame
    d = time_deltas(ramp)
    assert d.shape == ramp.shape
    assert torch.allclose(d[:, 4:-4], torch.full_like(d[:, 4:-4], 3.0))
    # at the edges the repeated frames flatten the slope
    assert d[0, 0, 0] < 3.0
    assert torch.allclose(time_deltas(torch.ones(1, 10, 3)), torch.zeros(1, 10, 3))
    # one interior value by the formula sum_n n (x[t+n] - x[t-n]) / (2 * sum_n n^2)
    x = torch.randn(1, 30, 1)
    want = sum(n * (x[0, 12 + n, 0] - x[0, 12 - n, 0]) for n in range(1, 5)) / 60.0
    assert torch.allclose(time_deltas(x)[0, 12, 0], want, atol=1e-6)


def test_standardize_per_example():
    x = torch.randn(3, 10, 4) * torch.tensor([1.0, 10.0, 100.0])[:, None, None] + 5.0
    y = standardize(x)
    assert torch.allclose(y.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2)), torch.ones(3), atol=1e-3)
