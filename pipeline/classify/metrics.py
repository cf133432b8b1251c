"""Classification scores of a run, computed once by `train` and read by `report` and `predict`.

Scores come from scikit-learn and are stored as plain JSON numbers (None where undefined), so a
run's metrics.json says the same thing to every reader. Each headline score has its 95% interval
beside it (`<score>_interval`, see `intervals`), and each sequence model its paired comparison
with every order-blind baseline (`versus`), so the report, the runs index and the rule that picks a
run's model (`runs.files.best_model`) can tell a difference from noise without the predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.classify.intervals import bootstrap_macro_f1, paired_difference, wilson

TOP_K = (3, 5)  # top-k accuracies reported when k is below the number of classes


def classification_metrics(true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    """Test metrics from class indices (n,) and probabilities (n, C), with scikit-learn.

    Macro-F1 averages over the classes present in `true`: a class without test videos has no
    recall to average. Per-class values that are undefined (no support, never predicted) are None.
    Accuracies carry Wilson intervals, macro-F1 a bootstrap one over the test videos (None where
    there are too few: `intervals.BOOTSTRAP_MIN`); `test_correct` is the count behind the accuracy.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, top_k_accuracy_score

    classes = list(range(len(labels)))
    result = {"test_videos": int(len(true)), "accuracy": None, "macro_f1": None}
    result.update({f"top{k}_accuracy": None for k in TOP_K if k < len(labels)})
    result.update({f"{score}_interval": None for score in list(result)[1:]}, test_correct=0)
    if not len(true):
        result["per_class"] = {label: {"precision": None, "recall": None, "f1": None, "support": 0} for label in labels}
        return result
    predicted = probabilities.argmax(1)
    result["accuracy"] = float(accuracy_score(true, predicted))
    result["macro_f1"] = float(f1_score(true, predicted, labels=np.unique(true), average="macro", zero_division=0))
    for k in TOP_K:
        if k < len(labels):
            result[f"top{k}_accuracy"] = float(top_k_accuracy_score(true, probabilities, k=k, labels=classes))
            hits = int(top_k_accuracy_score(true, probabilities, k=k, labels=classes, normalize=False))
            result[f"top{k}_accuracy_interval"] = wilson(hits, len(true))
    result["test_correct"] = int((predicted == true).sum())
    result["accuracy_interval"] = wilson(result["test_correct"], len(true))
    result["macro_f1_interval"] = bootstrap_macro_f1(true, predicted, len(labels))
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


def validation_metrics(true: np.ndarray, probabilities: np.ndarray) -> dict:
    """val_accuracy (None without validation videos), val_videos and its Wilson val_accuracy_interval."""
    right = int((probabilities.argmax(1) == true).sum()) if len(true) else 0
    return {
        "val_accuracy": right / len(true) if len(true) else None,
        "val_videos": int(len(true)),
        "val_accuracy_interval": wilson(right, len(true)),
    }


def add_comparisons(metrics: dict, predictions: pd.DataFrame) -> dict:
    """Add to each sequence model of `metrics` its `versus`: per order-blind baseline, the paired
    comparison of their test accuracies (`intervals.paired_difference`: difference, interval,
    p_value, first_only, second_only, videos), from predictions.csv's rows (model, video_id, true,
    predicted). Returns `metrics`."""
    right = {
        name: rows.set_index("video_id")["true"].eq(rows.set_index("video_id")["predicted"])
        for name, rows in predictions.groupby("model", sort=False)
    }
    for name, values in metrics.items():
        if values["kind"] == "sequence":
            values["versus"] = {
                other: paired_difference(right[name].to_numpy(), right[other].reindex(right[name].index).to_numpy())
                if name in right
                else None  # no test videos
                for other, scores in metrics.items()
                if scores["kind"] == "order-blind"
            }
    return metrics


def _number(value) -> float | None:
    """A JSON-safe number: None for NaN (undefined)."""
    return None if np.isnan(value) else float(value)
