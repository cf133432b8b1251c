"""Which classes a model confuses: the confusion matrix of a run's test predictions and its most frequent mistakes."""

from __future__ import annotations

import pandas as pd


def confusion_tables(true: pd.Series, predicted: pd.Series, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Confusion matrix (rows: true, columns: predicted) in counts and row-normalized; a row of a
    class without test videos is empty (NaN) in the normalized table."""
    from sklearn.metrics import confusion_matrix

    counts = pd.DataFrame(
        confusion_matrix(true, predicted, labels=labels), index=pd.Index(labels, name="true"), columns=labels
    )
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
