"""Classification scores of a run, computed once by `train` and read by `report` and `predict`.

Scores come from scikit-learn and are stored as plain JSON numbers (None where undefined), so a
run's metrics.json says the same thing to every reader. The rule that picks a run's best model
lives here too: the report lists a run by it, and `predict` uses it when no model is named.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, labels=classes, zero_division=np.nan)
    result["per_class"] = {label: {"precision": _number(precision[i]), "recall": _number(recall[i]), "f1": _number(f1[i]), "support": int(support[i])}
                           for i, label in enumerate(labels)}
    return result


def accuracy(true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """The share of rows whose most probable class is the true one; None without rows."""
    return float((probabilities.argmax(1) == true).mean()) if len(true) else None


def confusion_tables(true: pd.Series, predicted: pd.Series, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Confusion matrix (rows: true, columns: predicted) in counts and row-normalized; a row of a
    class without test videos is empty (NaN) in the normalized table."""
    from sklearn.metrics import confusion_matrix

    counts = pd.DataFrame(confusion_matrix(true, predicted, labels=labels), index=pd.Index(labels, name="true"), columns=labels)
    totals = counts.sum(axis=1)
    normalized = counts.div(totals.where(totals > 0), axis=0)
    return counts, normalized


def top_confusions(counts: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """The most frequent mistakes: true, predicted, videos, and share of the true class's videos."""
    pairs = counts.stack().rename("videos").reset_index()
    pairs.columns = ["true", "predicted", "videos"]
    pairs = pairs[(pairs["true"] != pairs["predicted"]) & (pairs["videos"] > 0)]
    pairs["share of true class"] = pairs["videos"] / pairs["true"].map(counts.sum(axis=1))
    return pairs.sort_values(["videos", "true"], ascending=[False, True]).head(limit).reset_index(drop=True)


def best_model(metrics: dict) -> str:
    """The model a run is listed by and predicts with by default: the sequence model with the best
    validation accuracy (the first on a tie), or the best model when the run has no sequence model."""
    def rank(name: str) -> tuple[bool, float]:
        values = metrics[name]
        val_accuracy = values.get("val_accuracy")
        return values.get("kind") == "sequence", val_accuracy if is_number(val_accuracy) else 0.0

    return max(metrics, key=rank)


def is_number(value) -> bool:
    """A JSON number (not a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value) -> float | None:
    """A JSON-safe number: None for NaN (undefined)."""
    return None if np.isnan(value) else float(value)
