"""The metric objects give the figures of all predictions: batch by batch, and with the
states of unequal shards merged as DDP gathers them; checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from audioclf.metrics import compute_metrics
from audioclf.training.metrics import build_metrics, metric_values


def _single(n: int = 61, c: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    scores = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, c)
    return scores, targets


def _multi(n: int = 61, c: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, c, generator=g) < 0.3).float()
    targets[:, 5] = 0  # a class without positives: left out of mAP, as sklearn's mean over the others
    scores = torch.randn(n, c, generator=g) + targets
    return scores, targets


def _sklearn_single(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    y, p = targets.numpy(), scores.argmax(1).numpy()
    return {
        "accuracy": sk.accuracy_score(y, p),
        "f1_macro": sk.f1_score(y, p, average="macro", labels=range(scores.shape[1])),
        "balanced_accuracy": sk.balanced_accuracy_score(y, p),
        "top5_accuracy": sk.top_k_accuracy_score(y, scores.numpy(), k=5, labels=range(scores.shape[1])),
    }


def _sklearn_multi(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    y, s = targets.numpy(), scores.numpy()
    used = [k for k in range(y.shape[1]) if y[:, k].any()]
    return {
        "mAP": float(np.mean([sk.average_precision_score(y[:, k], s[:, k]) for k in used])),
        "mean_auc": float(np.mean([sk.roc_auc_score(y[:, k], s[:, k]) for k in used])),
        "precision_at_1": float(np.mean(y[np.arange(len(y)), s.argmax(1)][y.sum(1) > 0])),
    }


def _update_in_batches(collection, scores, targets, batch: int = 8) -> None:
    for i in range(0, len(scores), batch):
        collection.update(scores[i : i + batch], targets[i : i + batch])


@pytest.mark.parametrize("multi_label", [False, True])
def test_batched_updates_give_the_figures_of_all_clips(multi_label: bool) -> None:
    scores, targets = _multi() if multi_label else _single()
    expected = _sklearn_multi(scores, targets) if multi_label else _sklearn_single(scores, targets)
    m = build_metrics(scores.shape[1], multi_label)
    _update_in_batches(m, scores, targets)
    got = metric_values(m)
    assert got["clips"] == len(scores)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    # and the same numbers as the one-shot function `audioclf evaluate` uses
    once = compute_metrics(scores, targets, multi_label)
    assert {k: got[k] for k in once} == pytest.approx(once, abs=1e-7)


@pytest.mark.parametrize("multi_label", [False, True])
def test_states_of_unequal_shards_merge_into_the_figures_of_all_clips(multi_label: bool) -> None:
    """What DDP does at compute time: each rank's states reduced (counts summed, score
    lists concatenated); shards of 31 and 30 clips, as a 61-clip set over 2 ranks."""
    scores, targets = _multi() if multi_label else _single()
    def shard(r: int):
        m = build_metrics(scores.shape[1], multi_label)
        _update_in_batches(m, scores[r::2], targets[r::2])
        return m

    per_rank = [metric_values(shard(r)) for r in range(2)]
    shards = [shard(r) for r in range(2)]
    for name, metric in shards[0].items(keep_base=True):
        metric.merge_state(shards[1][name])
    got = metric_values(shards[0])
    expected = _sklearn_multi(scores, targets) if multi_label else _sklearn_single(scores, targets)
    key = "mAP" if multi_label else "f1_macro"
    assert got["clips"] == 61
    assert got[key] == pytest.approx(expected[key], abs=1e-6)
    # the mean of per-rank figures (what sync_dist=True logged before) is another number
    assert abs((per_rank[0][key] + per_rank[1][key]) / 2 - expected[key]) > 1e-4
