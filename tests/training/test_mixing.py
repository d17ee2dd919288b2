"""Label-mixing batch augmentation: training/mixing.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioclf.training.mixing import BatchMixer, list_mix_methods


def _constant_batch(b: int = 8, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip i is the constant i + 1, so every mixed sample tells where it came from."""
    x = torch.arange(1, b + 1, dtype=torch.float32).unsqueeze(1).repeat(1, n)
    return x, torch.eye(b)


@pytest.mark.parametrize("method", ["mixup", "cutmix", "timemix"])
def test_waveform_mixing_targets_match_the_weights_actually_used(method: str) -> None:
    mixer = BatchMixer({method: 1.0}, alpha=1.0, seed=0)
    x, y = _constant_batch()
    result = mixer.mix(x, y, epoch=0, domain="waveform")
    assert result.method == method
    w, partner = result.weights, result.partner
    torch.testing.assert_close(result.targets.sum(dim=1), torch.ones(8))
    torch.testing.assert_close(result.targets, w[:, None] * y + (1 - w[:, None]) * y[partner])
    own, other = x[:, :1], x[partner][:, :1]
    for i in range(8):
        if partner[i] == i:
            continue
        if method == "mixup":
            share = (result.inputs[i] - other[i]) / (own[i] - other[i])
            torch.testing.assert_close(share, w[i].expand_as(share))
        else:
            share = (result.inputs[i] == own[i]).float().mean()
            assert share.item() == pytest.approx(w[i].item(), abs=1e-6)
            assert torch.all((result.inputs[i] == own[i]) | (result.inputs[i] == other[i]))
    if method == "timemix":  # own part first, then the partner's to the end
        from_other = result.inputs != own
        for row in from_other[from_other.any(dim=1)]:
            first = int(row.float().argmax())
            assert row[first:].all() and not row[:first].any()


def test_freqmix_on_spectrograms_mixes_bins_with_matching_targets() -> None:
    mixer = BatchMixer({"freqmix": 1.0}, seed=1)
    assert mixer.needs_spectrogram
    x = torch.arange(1, 9, dtype=torch.float32).view(8, 1, 1).repeat(1, 10, 32)
    y = torch.eye(8)
    out, targets = mixer.mix_spectrogram(x, y, epoch=0)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
    own = x[:, :1, :1]
    share = (out == own).float().mean(dim=(1, 2))
    # Whole bins: every frame of a bin comes from the same clip.
    assert torch.all((out == own).all(dim=1) | (out != own).all(dim=1))
    result = BatchMixer({"freqmix": 1.0}, seed=1).mix(x, y, 0, "spectrogram")
    for i in range(8):
        if result.partner[i] != i:
            assert targets[i, i].item() == pytest.approx(share[i].item(), abs=1e-6)
    # The waveform path cannot do freqmix and leaves the batch alone.
    w, t = mixer(torch.randn(8, 100), y, epoch=0)
    assert torch.equal(t, y)


def test_multi_hot_targets_stay_convex() -> None:
    torch.manual_seed(0)
    y = (torch.rand(16, 5) < 0.4).float()
    _, mixed = BatchMixer({"mixup": 1, "cutmix": 1}, seed=2)(torch.randn(16, 64), y, epoch=0)
    assert mixed.min() >= 0 and mixed.max() <= 1
    assert not torch.equal(mixed, y)


def test_epoch_mix_is_honoured() -> None:
    mixer = BatchMixer({"mixup": 1.0}, mix_ratio=1.0, epoch_mix=3, seed=0)
    x, y = _constant_batch()
    for epoch in range(3):
        assert mixer.mix(x, y, epoch, "waveform").method is None
        xm, ym = mixer(x, y, epoch)
        assert xm is x and ym is y
    for epoch in (3, 4, 10):
        assert mixer.mix(x, y, epoch, "waveform").method == "mixup"


def test_mix_ratio_zero_never_mixes_and_half_mixes_about_half() -> None:
    x, y = _constant_batch()
    never = BatchMixer({"mixup": 1, "cutmix": 1, "timemix": 1}, mix_ratio=0.0, seed=0)
    assert all(never.mix(x, y, 100, "waveform").method is None for _ in range(50))
    half = BatchMixer({"mixup": 1.0}, mix_ratio=0.5, seed=0)
    mixed = np.mean([half.mix(x, y, 0, "waveform").method is not None for _ in range(200)])
    assert 0.35 < mixed < 0.65


def test_method_weights_and_seed_reproducibility() -> None:
    x, y = _constant_batch()
    mixer = BatchMixer({"mixup": 3.0, "cutmix": 1.0, "freqmix": 0.0}, seed=5)
    picks = [mixer.mix(x, y, 0, "waveform").method for _ in range(200)]
    assert set(picks) == {"mixup", "cutmix"} and 0.65 < picks.count("mixup") / 200 < 0.85
    a = BatchMixer({"mixup": 1, "cutmix": 1}, seed=9)
    b = BatchMixer({"mixup": 1, "cutmix": 1}, seed=9)
    for _ in range(3):
        xa, ya = a(x, y, 0)
        xb, yb = b(x, y, 0)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_batch_mixer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"'mixupp'.*known:.*mixup"):
        BatchMixer({"mixupp": 1.0})
    with pytest.raises(ValueError, match="alpha"):
        BatchMixer({"mixup": 1.0}, alpha=0.0)
    with pytest.raises(ValueError, match="targets"):
        BatchMixer({"mixup": 1.0})(torch.randn(4, 10), torch.zeros(4), epoch=0)
    assert set(list_mix_methods()) == {"mixup", "cutmix", "timemix", "freqmix"}
