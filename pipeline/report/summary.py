"""The top of a training run's page: every model side by side on the same test split, each score with its
95% interval, the verdict on time order, and a sentence wherever a split is too small to tell models apart.

Everything here is read from metrics.json (`runs.verdict` words it), so the page says what the
`train` summary said and what `predict` does; `headline_metrics` is the run's line in the runs index.
"""

from __future__ import annotations

import pandas as pd

from pipeline.runs.files import best_model
from pipeline.runs.verdict import comparison, noise_notes, score_text, time_order

INTERVAL_NOTE = (  # how `classify.intervals` computed them (a test keeps the numbers in step)
    "In brackets: 95% intervals. Accuracies: Wilson score interval. Macro-F1: percentile bootstrap over the test "
    "videos (1000 resamples, seed 0; none below 20 videos, nor when every resample scores the same, e.g. all "
    "right). Time order: Newcombe's interval for the difference of paired accuracies and McNemar's exact test. "
    "The listed model is the sequence model with the best validation accuracy when its interval overlaps no "
    "other's, else the first trained of those whose intervals overlap."
)


def summary_blocks(run: dict) -> list:
    """The results section: the verdict, the too-small warnings, the table of models, how to read it."""
    metrics = run["metrics"]
    blocks = [("h2", "Results on the test split", "results")]
    tested = next(iter(metrics.values()))["test_videos"]
    if not tested:
        return blocks + [
            (
                "warning",
                "The test split is empty: there are no test metrics, confusion matrices or misclassified videos.",
            ),
            ("table", results_table(metrics)),
        ]
    verdict = time_order(metrics)
    headline = best_model(metrics)
    blocks += [("p", verdict)] if verdict else []
    blocks += [("warning", note) for note in noise_notes(metrics)]
    blocks += [
        ("table", results_table(metrics)),
        (
            "p",
            f"All models are evaluated on the same {tested} test videos. The run is listed by, and predict "
            f"uses, {headline} (chosen on the validation split: see the rule in the note below).",
        ),
        ("note", INTERVAL_NOTE),
    ]
    return blocks


def results_table(metrics: dict) -> pd.DataFrame:
    """One row per model: its scores with their 95% intervals, as text ("0.979 [0.89, 1.00]")."""
    rows = []
    for name, values in metrics.items():
        top = [key for key in values if key.startswith("top") and key.endswith("_accuracy")]
        rows.append(
            {
                "model": name,
                "type": values["kind"],
                "test accuracy": score_text(values, "accuracy"),
                "macro-F1": score_text(values, "macro_f1"),
                **{key.replace("_accuracy", ""): score_text(values, key) for key in top},
                "val accuracy": score_text(values, "val_accuracy"),
                "epochs": values["epochs"] or "",
                "s/epoch": values["seconds_per_epoch"],
                "train s": values["seconds"],
            }
        )
    return pd.DataFrame(rows)


def headline_metrics(metrics: dict) -> dict:
    """run.json's metrics, a column each in the runs index: the listed model's test accuracy, macro-F1 and
    validation accuracy with their intervals, the time-order difference with its interval and McNemar p."""
    headline = best_model(metrics)
    values = metrics[headline]
    summary = {}
    for key in ("accuracy", "macro_f1"):
        summary.update({key: values[key], f"{key}_interval": values.get(f"{key}_interval")})
    found = comparison(metrics)
    if found:
        summary.update(
            time_order=found["difference"], time_order_interval=found["interval"], time_order_p=found["p_value"]
        )
    summary.update(
        val_accuracy=values["val_accuracy"],
        val_accuracy_interval=values.get("val_accuracy_interval"),
        test_videos=values["test_videos"],
    )
    return summary


def other_models(metrics: dict) -> dict:
    """run.json's other_models: the test accuracy of each model the run is not listed by (the index shows them
    beside the model's name, not as columns of their own)."""
    headline = best_model(metrics)
    return {name: scores["accuracy"] for name, scores in metrics.items() if name != headline}
