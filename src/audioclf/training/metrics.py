"""The training task's metric objects (torchmetrics ``Metric``) and the metric that picks
the best checkpoint.

:func:`build_metrics` gives the figures of :func:`audioclf.metrics.compute_metrics` as
torchmetrics ``Metric`` objects, which the training task updates batch by batch. Under DDP
their states are gathered across the ranks before computing, so the figures are those of
all predictions (not a mean of per-rank figures): the single-label ones keep per-class
counts (summed across ranks), the multi-label ones (mAP and AUC rank all clips of a class)
keep the scores and targets themselves (concatenated across ranks, shards of unequal length
included).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from audioclf.metrics import multi_label_metrics


def monitor_metric(multi_label: bool) -> str:
    """The validation metric that picks the best checkpoint."""
    return "val/mAP" if multi_label else "val/accuracy"


def build_metrics(num_classes: int, multi_label: bool) -> Any:
    """A ``MetricCollection`` updated with ``(scores (B, C), targets)`` whose ``compute()``
    gives :func:`audioclf.metrics.compute_metrics`'s figures (without per-class tables) plus ``clips``,
    the number of clips evaluated."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    metrics: dict[str, Any] = {"clips": ClipCount()}
    if multi_label:
        metrics["ranking"] = MultiLabelScores(num_classes)
    else:
        c = num_classes
        metrics["accuracy"] = MulticlassAccuracy(c, average="micro")
        metrics["f1_macro"] = MulticlassF1Score(c, average="macro")
        metrics["balanced_accuracy"] = MulticlassAccuracy(c, average="macro")
        if c > 5:
            metrics["top5_accuracy"] = MulticlassAccuracy(c, average="micro", top_k=5)
    # compute groups share states between metrics of the same counts; off, as the counts
    # metric takes other inputs than the rest
    return MetricCollection(metrics, compute_groups=False)


def metric_values(collection: Any) -> dict[str, Any]:
    """``collection.compute()`` as plain Python numbers (multi-label figures flattened)."""
    out: dict[str, Any] = {}
    for k, v in collection.compute().items():
        if isinstance(v, torch.Tensor):
            v = int(v) if k in ("clips", "classes_evaluated") else float(v)
        out[k] = v
    return out


class ClipCount(Metric):
    """How many clips were evaluated (summed across ranks)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("n", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self.n += scores.shape[0]

    def compute(self) -> torch.Tensor:
        return self.n


class MultiLabelScores(Metric):
    """:func:`multi_label_metrics` over every clip seen: scores ``(B, C)`` and multi-hot
    targets ``(B, C)`` are kept (concatenated across ranks when computing), as AP and
    AUC rank all clips of a class together. ``compute()`` returns a dict of figures."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self.scores.append(scores.detach().float())
        # float like the scores: a rank with no clips sends an empty float tensor when gathering
        self.targets.append(targets.detach().float())

    def compute(self) -> dict[str, Any]:
        scores, targets = dim_zero_cat(self.scores), dim_zero_cat(self.targets)
        if scores.numel() == 0:
            raise ValueError("no clips were evaluated")
        return multi_label_metrics(scores.cpu(), targets.cpu())
