"""Classification figures on scores and targets (torchmetrics functional), single-label
and multi-label: what evaluation reports and what the training task's metric objects
(:mod:`audioclf.training.metrics`) compute batch by batch.

All functions take scores ``(clips, classes)`` (probabilities or logits: every metric
here is rank- or argmax-based except where noted) and targets: class indices ``(clips,)``
for single-label, a 0/1 matrix ``(clips, classes)`` for multi-label. This module imports
no other audioclf package, so inference (evaluation) and training share it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics.functional import classification as tmc

from audioclf.errors import DataError


def single_label_metrics(
    scores: torch.Tensor, targets: torch.Tensor, label_names: list[str] | None = None, per_class: bool = False
) -> dict[str, Any]:
    """accuracy, top-5 accuracy, macro-F1, balanced accuracy; optionally per-class P/R/F1
    and the confusion matrix (rows: true class, columns: predicted)."""
    c = scores.shape[1]
    targets = targets.long()
    out: dict[str, Any] = {
        "accuracy": float(tmc.multiclass_accuracy(scores, targets, c, average="micro")),
        "f1_macro": float(tmc.multiclass_f1_score(scores, targets, c, average="macro")),
        "balanced_accuracy": float(tmc.multiclass_accuracy(scores, targets, c, average="macro")),
    }
    if c > 5:
        out["top5_accuracy"] = float(tmc.multiclass_accuracy(scores, targets, c, average="micro", top_k=5))
    if per_class:
        names = label_names or [str(i) for i in range(c)]
        p = tmc.multiclass_precision(scores, targets, c, average=None)
        r = tmc.multiclass_recall(scores, targets, c, average=None)
        f = tmc.multiclass_f1_score(scores, targets, c, average=None)
        support = torch.bincount(targets, minlength=c)
        out["per_class"] = {
            n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, n in enumerate(names)
        }
        out["confusion_matrix"] = tmc.multiclass_confusion_matrix(scores, targets, c).tolist()
    return out


def d_prime(auc: float) -> float:
    """Sensitivity index from AUC, as reported by PANNs and AST: sqrt(2) * Phi^-1(AUC)."""
    auc = min(max(auc, 1e-6), 1 - 1e-6)
    return math.sqrt(2.0) * float(torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)))


def multi_label_metrics(
    scores: torch.Tensor, targets: torch.Tensor, label_names: list[str] | None = None, per_class: bool = False
) -> dict[str, Any]:
    """mAP and mean AUC over the classes that have positives (and, for AUC, negatives) in
    the evaluated set, d-prime, ``precision_at_1`` (share of clips whose top-scored class is
    one of their labels) and ESPnet's ``mean_acc``; optionally per-class AP and AUC.

    ``mean_acc`` is what ESPnet's cls recipes report beside mAP (seed 004: 47.73 on AS-20K):
    the share of clips whose top-scored class equals the *lowest-index* positive label
    (``argmax`` of the multi-hot target), a single-label accuracy applied to multi-label
    data. It is reproduced as defined there so the numbers compare.
    """
    targets = targets.long()
    c = scores.shape[1]
    pos = targets.sum(0)
    has_pos = pos > 0
    has_both = has_pos & (pos < targets.shape[0])
    if not bool(has_pos.any()):
        raise DataError("multi-label metrics need at least one positive label in the evaluated clips")
    ap = tmc.multilabel_average_precision(scores.float(), targets, c, average=None)
    auc = tmc.multilabel_auroc(scores.float(), targets, c, average=None)
    top = scores.argmax(1)
    first_label = targets.argmax(1)
    labelled = targets.sum(1) > 0
    hit = targets.gather(1, top[:, None])[:, 0].bool()
    m_auc = float(auc[has_both].mean()) if bool(has_both.any()) else float("nan")
    out: dict[str, Any] = {
        "mAP": float(ap[has_pos].mean()),
        "mean_auc": m_auc,
        "d_prime": d_prime(m_auc) if not math.isnan(m_auc) else float("nan"),
        "mean_acc": float((top == first_label).float().mean()),
        "precision_at_1": float(hit[labelled].float().mean()) if bool(labelled.any()) else float("nan"),
        "classes_evaluated": int(has_pos.sum()),
    }
    if per_class:
        names = label_names or [str(i) for i in range(c)]
        out["per_class"] = {
            n: {"ap": float(ap[i]) if has_pos[i] else None, "auc": float(auc[i]) if has_both[i] else None, "positives": int(pos[i])}
            for i, n in enumerate(names)
        }
    return out


def compute_metrics(
    scores: torch.Tensor, targets: torch.Tensor, multi_label: bool, label_names: list[str] | None = None, per_class: bool = False
) -> dict[str, Any]:
    fn = multi_label_metrics if multi_label else single_label_metrics
    return fn(scores, targets, label_names, per_class)
