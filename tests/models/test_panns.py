"""PANNs CNN6/10/14 against the golden vectors, plus checkpoint import, transfer learning,
the 16 kHz setting and SpecAugment."""

from __future__ import annotations

import logging

import pytest
import torch

from audioclf.models import create_model
from audioclf.models.layers.masking import SpecAugment
from tests.golden import load_golden, rule_state_dict

VARIANTS = ("cnn6", "cnn10", "cnn14")


@pytest.fixture(scope="module")
def published_checkpoints(tmp_path_factory) -> dict[str, tuple[dict, object]]:
    """Per variant: the golden file and a published-layout checkpoint of the rule's weights."""
    root = tmp_path_factory.mktemp("panns")
    out = {}
    for name in VARIANTS:
        golden = load_golden(f"panns_{name}")
        path = root / f"{name}.pth"
        torch.save({"model": rule_state_dict(golden)}, path)
        out[name] = (golden, path)
    return out


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_golden(name, published_checkpoints):
    golden, path = published_checkpoints[name]
    model = create_model(name, 527, pretrained=path).eval()
    wave = golden["waveform"]
    captured = {}
    # the head's input is the clip embedding (fc1 + ReLU; the head dropout is off in eval)
    model.fc_audioset.register_forward_pre_hook(lambda m, args: captured.update(emb=args[0]))
    with torch.no_grad():
        logmel = model.frontend(wave)
        logits = model(wave)
    # measured max abs diffs: logmel 0.0; embedding 1.1e-5 / 1.3e-6 / 4.9e-7 and logits
    # 9.5e-6 / 1.3e-6 / 3.6e-7 for cnn6 / cnn10 / cnn14
    torch.testing.assert_close(logmel, golden["logmel"][:, 0], rtol=0, atol=1e-3)
    torch.testing.assert_close(captured["emb"], golden["embedding"], rtol=0, atol=1e-3)
    torch.testing.assert_close(logits, golden["logits"], rtol=0, atol=1e-3)


def test_cnn14_parameter_count():
    model = create_model("cnn14", 527)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable - 80.8e6) / 80.8e6 < 0.005  # measured 80,753,615
    # the frontend's STFT kernels and mel matrix are buffers, not parameters
    assert not any(n.startswith("frontend.") for n, _ in model.named_parameters())


def test_head_replaced_for_other_class_count(published_checkpoints, caplog):
    golden, path = published_checkpoints["cnn14"]
    with caplog.at_level(logging.INFO, logger="audioclf.models.checkpoints"):
        model = create_model("cnn14", 10, pretrained=path).eval()
    assert "head replaced" in caplog.text and "fc_audioset.weight" in caplog.text
    # the backbone is the checkpoint's, the head is new
    sd = torch.load(path, weights_only=True)["model"]
    torch.testing.assert_close(model.fc1.weight, sd["fc1.weight"])
    torch.testing.assert_close(model.frontend.mel_fb, sd["logmel_extractor.melW"])
    wave = golden["waveform"][:, :32000]
    with torch.no_grad():
        logits = model(wave)
        emb = model.embed(wave)
    assert logits.shape == (2, 10)
    assert emb.shape == (2, 2048)
    torch.testing.assert_close(model.fc_audioset(emb), logits)


def test_freeze_backbone_trains_only_the_head():
    torch.manual_seed(0)
    model = create_model("cnn6", 10, freeze_backbone=True, clip_seconds=1.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc_audioset.weight", "fc_audioset.bias"}
    model.train()
    # the frozen part stays in eval: BN statistics are not updated, dropout is off
    assert model.training and model.fc_audioset.training
    assert not model.bn0.training and not model.conv_block1.bn1.training
    stats = model.conv_block2.bn1.running_mean.clone()
    loss = model(torch.randn(2, 32000)).sum()
    loss.backward()
    torch.testing.assert_close(model.conv_block2.bn1.running_mean, stats)
    assert model.fc_audioset.weight.grad is not None
    assert model.conv_block1.conv1.weight.grad is None


def test_spec_augment_stripes():
    torch.manual_seed(0)
    # the setting PANNs publish (and audioclf's cnn6/10/14 use): zero-filled stripes
    aug = SpecAugment(time_mask_width=64, time_masks=2, freq_mask_width=8, freq_masks=2, fill="zero").train()
    x = torch.ones(8, 1, 200, 64)
    y = aug(x)
    zero = y == 0
    for b in range(8):
        rows = zero[b, 0].all(dim=1)  # whole time frames dropped
        cols = zero[b, 0].all(dim=0)  # whole mel bins dropped
        # every zero belongs to a dropped frame or bin: stripes, not speckle
        assert torch.equal(zero[b, 0], rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 63 and cols.sum() <= 2 * 7
    assert zero.any()
    # drawn per example
    assert not all(torch.equal(zero[0], zero[b]) for b in range(1, 8))
    assert torch.equal(aug.eval()(x), x)


def test_spec_augment_in_model_train_only():
    torch.manual_seed(0)
    model = create_model("cnn6", 5, clip_seconds=1.0).eval()
    plain = create_model("cnn6", 5, clip_seconds=1.0, spec_augment=False).eval()
    plain.load_state_dict(model.state_dict())
    wave = torch.randn(2, 32000)
    seen = []
    model.conv_block1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        ref = model(wave)
        torch.testing.assert_close(plain(wave), ref, rtol=0, atol=0)  # no-op in eval
        assert not (seen[-1] == 0).all(dim=3).any()
        model.train()
        model(wave)
    # in train mode whole frames of the normalised log-mel are zeroed before the blocks
    assert (seen[-1] == 0).all(dim=3).any()
    # and with only SpecAugment active (BN/dropout in eval) the output changes
    model.eval()
    assert model.spec_augmenter.fill == "zero"  # the published PANNs setting
    model.spec_augmenter.train()
    with torch.no_grad():
        assert not torch.allclose(model(wave), ref)


def test_16k_setting():
    model = create_model(
        "cnn14", 527, sample_rate=16000, n_fft=512, hop_length=160, fmax=8000
    ).eval()
    assert model.sample_rate == 16000 and model.clip_samples == 160000
    assert model.frontend.stft_real.shape == (257, 1, 512)
    assert model.frontend.mel_fb.shape == (257, 64)
    with torch.no_grad():
        assert model(torch.randn(1, 16000)).shape == (1, 527)


def test_published_checkpoint_with_missing_key_errors(published_checkpoints, tmp_path):
    _, path = published_checkpoints["cnn6"]
    sd = torch.load(path, weights_only=True)["model"]
    broken = dict(sd)
    del broken["conv_block3.conv1.weight"]
    torch.save({"model": broken}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys: conv_block3\.conv1\.weight"):
        create_model("cnn6", 527, pretrained=tmp_path / "broken.pth")
    no_mel = dict(sd)
    del no_mel["logmel_extractor.melW"]
    torch.save({"model": no_mel}, tmp_path / "no_mel.pth")
    with pytest.raises(ValueError, match=r"lacks frontend entries: logmel_extractor\.melW"):
        create_model("cnn6", 527, pretrained=tmp_path / "no_mel.pth")


def test_own_layout_falls_back_to_generic_loading(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn6", 3, clip_seconds=1.0)
    assert model.remap_checkpoint({"model": model.state_dict()}) is None
    torch.save({"model": model.state_dict()}, tmp_path / "own.pth")
    loaded = create_model("cnn6", 3, clip_seconds=1.0, pretrained=tmp_path / "own.pth")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_too_short_input_is_rejected():
    model = create_model("cnn14", 2).eval()
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3200))
