"""Spectrogram masking of training batches: training/spec_augment.py and the SpecAugment layer."""

from __future__ import annotations

import pytest
import torch

from audioclf.models.layers.masking import SpecAugment
from audioclf.training.spec_augment import build_spec_augment


def _masked_rows(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: frames where every bin was replaced by the example's mean."""
    fill = x.mean(dim=(1, 2), keepdim=True)
    return ((out == fill) & (out != x)).all(dim=2)


def test_time_masks_have_the_configured_width_and_the_mean_as_value() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 50, 16)
    out = SpecAugment(time_mask_width=10, time_masks=1, freq_mask_width=0, freq_masks=0)(x)
    rows = _masked_rows(out, x)
    counts = rows.sum(dim=1)
    assert counts.max() <= 9 and counts.max() >= 5  # widths uniform in [0, 10)
    for r in rows:
        idx = torch.nonzero(r).flatten()
        if len(idx):
            assert idx[-1] - idx[0] + 1 == len(idx)  # one contiguous mask
    # Nothing but the masked frames changed.
    assert torch.equal(out[~rows], x[~rows])


def test_freq_masks_and_four_dim_input() -> None:
    torch.manual_seed(1)
    x = torch.randn(32, 1, 20, 40)
    out = SpecAugment(0, 0, freq_mask_width=6, freq_masks=2)(x)
    assert out.shape == x.shape
    changed_bins = (out != x)[:, 0].all(dim=1).sum(dim=1)  # whole bins replaced
    assert changed_bins.max() <= 10 and changed_bins.sum() > 0
    assert torch.equal((out != x)[:, 0].any(dim=1).sum(dim=1), changed_bins)


def test_spec_augment_is_identity_in_eval_and_p_is_per_example() -> None:
    x = torch.randn(200, 30, 8)
    aug = SpecAugment(10, 2, 4, 2, p=0.5)
    torch.manual_seed(2)
    touched = (aug(x) != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.35 < touched < 0.65
    assert torch.equal(aug.eval()(x), x)


def test_build_spec_augment_from_config() -> None:
    spec = {
        "time_masking": {"p": 1.0, "width": 8, "num": 1},
        "freq_masking": {"p": 0.0, "width": 4, "num": 2},
        "dropblock": {"p": 1.0, "drop_prob": 0.2, "block_size": [3, 3]},
    }
    module = build_spec_augment(spec)
    assert len(module) == 2  # freq masking disabled by p=0
    x = torch.randn(8, 40, 20) + 5.0
    torch.manual_seed(3)
    out = module.train()(x)
    assert out.shape == x.shape
    assert (out == 0).any()  # DropBlock zeros
    assert torch.equal(module.eval()(x), x)
    assert build_spec_augment({"time_masking": {"p": 0}}) is None
    assert build_spec_augment(None) is None


def test_build_spec_augment_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match=r"'timemask'.*known:.*time_masking"):
        build_spec_augment({"timemask": {"p": 1}})
    with pytest.raises(ValueError, match=r"'freq_masking'.*'fmp'.*allowed options: p, fill, num, width"):
        build_spec_augment({"freq_masking": {"fmp": 8}})


def test_zero_fill_is_the_panns_setting() -> None:
    x = torch.randn(16, 30, 12) + 3.0
    torch.manual_seed(4)
    mean_filled = SpecAugment(8, 2, 4, 2)(x)
    torch.manual_seed(4)
    zero_filled = SpecAugment(8, 2, 4, 2, fill="zero")(x)
    masked = zero_filled != x
    assert masked.any()
    # the same draws mask the same cells; only the value put there differs
    assert torch.equal(masked, mean_filled != x)
    assert bool((zero_filled[masked] == 0).all())
    torch.testing.assert_close(mean_filled[masked], x.mean(dim=(1, 2), keepdim=True).expand_as(x)[masked])
    with pytest.raises(ValueError, match="fill must be one of mean, zero"):
        SpecAugment(8, 2, 4, 2, fill="noise")
    module = build_spec_augment({"time_masking": {"p": 1.0, "fill": "zero"}})
    assert module[0].fill == "zero"
