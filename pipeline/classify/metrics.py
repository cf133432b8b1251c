"""Classification scores of a run, computed once by `train` and read by `report` and `predict`.

Scores come from scikit-learn and are stored as plain JSON numbers (None where undefined), so a
run's metrics.json says the same thing to every reader. The rule that picks a run's best model
lives here too: the report lists a run by it, and `predict` uses it when no model is named.
"""

from __future__ import annotations

import numpy as np

TOP_K = (3, 5)  # top-k accuracies reported when k is below the number of classes


def classification_metrics(true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    """Test metrics from class indices (n,) and probabilities (n, C), with scikit-learn.

    Macro-F1 averages over the classes present in `true`: a class without test videos has no
    recall to average. Per-class values that are undefined (no support, never predicted) are None.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, top_k_accuracy_score

    classes = list(range(len(labels)))
    result = {"test_videos": int(len(true)), "accuracy": None, "macro_f1": None}
    result.update({f"top{k}_accuracy": None for k in TOP_K if k < len(labels)})
    if not len(true):
        result["per_class"] = {label: {"precision": None, "recall": None, "f1": None, "support": 0} for label in labels}
        return result
    predicted = probabilities.argmax(1)
    result["accuracy"] = float(accuracy_score(true, predicted))
    result["macro_f1"] = float(f1_score(true, predicted, labels=np.unique(true), average="macro", zero_division=0))
    for k in TOP_K:
        if k < len(labels):
            result[f"top{k}_accuracy"] = float(top_k_accuracy_score(true, probabilities, k=k, labels=classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=classes, zero_division=np.nan
    )
    result["per_class"] = {
        label: {
            "precision": _number(precision[i]),
            "recall": _number(recall[i]),
            "f1": _number(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return result


def accuracy(true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """The share of rows whose most probable class is the true one; None without rows."""
    return float((probabilities.argmax(1) == true).mean()) if len(true) else None


def _number(value) -> float | None:
    """A JSON-safe number: None for NaN (undefined)."""
    return None if np.isnan(value) else float(value)
