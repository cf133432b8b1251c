"""What a run's scores can and cannot tell apart, in words: the page's verdict on time order and the
sentences that say when a split is too small to separate the models.

Read from metrics.json alone (the intervals and paired comparisons `train` stores beside each
score), so the run's page, the `train` summary and `predict`'s choice (`files.best_model`) say the
same thing. A run of an earlier version, which stores no intervals, gets the plain difference.
"""

from __future__ import annotations

from pipeline.runs.files import best_model, is_number, validation_choice


def headline_pair(metrics: dict) -> tuple[str, str] | None:
    """(sequence model, order-blind baseline) whose difference says whether time order helped: the
    model the run is listed by (`best_model`) and the baseline with the best validation accuracy
    (the first on a tie). Both are chosen on validation, so the test difference is not the larger
    of several noisy ones. None when the run lacks one of the two kinds."""
    sequence = best_model(metrics)
    baselines = [name for name in metrics if metrics[name].get("kind") == "order-blind"]
    if metrics[sequence].get("kind") != "sequence" or not baselines:
        return None
    baseline = max(baselines, key=lambda name: _score(metrics[name].get("val_accuracy")))
    return sequence, baseline


def comparison(metrics: dict) -> dict | None:
    """The stored paired comparison of `headline_pair` (see `classify.intervals.paired_difference`), or None."""
    pair = headline_pair(metrics)
    versus = metrics[pair[0]].get("versus") if pair else None
    found = versus.get(pair[1]) if isinstance(versus, dict) else None
    return found if isinstance(found, dict) and _interval(found.get("interval")) else None


def time_order(metrics: dict) -> str | None:
    """One sentence: what time order gained on the test split, with its interval and p-value where stored."""
    pair = headline_pair(metrics)
    if not pair or not all(is_number(metrics[name].get("accuracy")) for name in pair):
        return None
    sequence, baseline = pair
    found = comparison(metrics)
    if found is None:
        points = 100 * (metrics[sequence]["accuracy"] - metrics[baseline]["accuracy"])
        return f"Time order: {sequence} against {baseline}: {points:+.1f} points of test accuracy (no interval stored)."
    low, high = (100 * value for value in found["interval"])
    outcome = "inside the noise" if not separated(found["interval"]) else "time order helped"
    if separated(found["interval"]) and high < 0:
        outcome = "time order hurt"
    return (
        f"Time order: {sequence} against the order-blind {baseline} on the same {found['videos']} test videos: "
        f"{100 * found['difference']:+.1f} points of accuracy (95% interval {low:+.1f} to {high:+.1f}; McNemar "
        f"p {p_text(found['p_value'])}): {outcome}."
    )


def noise_notes(metrics: dict) -> list[str]:
    """One sentence for each choice the run's splits are too small to make: time order against no time
    order on the test split, and between the sequence models on the validation split."""
    notes = []
    found = comparison(metrics)
    if found is not None and not separated(found["interval"]):
        sequence, baseline = headline_pair(metrics)
        low, high = (100 * value for value in found["interval"])
        notes.append(
            f"The test split ({found['videos']} videos) is too small to tell {sequence} from {baseline}: their "
            f"difference, {100 * found['difference']:+.1f} points, lies inside its 95% interval of {low:+.1f} to "
            f"{high:+.1f} points, so this run cannot say whether time order helps."
        )
    choice = validation_choice(metrics)
    if choice and len(choice[1]) > 1:
        chosen, tied = choice
        videos = metrics[chosen].get("val_videos")
        scores = ", ".join(f"{name} {score_text(metrics[name], 'val_accuracy')}" for name in tied)
        notes.append(
            (
                f"The validation split ({videos} videos) is too small to tell {', '.join(tied)} apart "
                f"(validation accuracy {scores}: the intervals overlap)"
                if videos
                else f"There are no validation videos to tell {', '.join(tied)} apart"
            )
            + f", so the run is listed by, and predict uses, {chosen}: the first of them trained, whatever their "
            "scores."
        )
    return notes


def score_text(values: dict, key: str, digits: int = 3) -> str:
    """A stored score with its interval, e.g. "0.667 [0.21, 0.94]"; "" where undefined."""
    value, interval = values.get(key), _interval(values.get(f"{key}_interval"))
    if not is_number(value):
        return ""
    # no-break spaces inside the brackets: a narrow table cell wraps before the interval, not inside it
    return f"{value:.{digits}f}" + (f" [{interval[0]:.2f},\u00a0{interval[1]:.2f}]" if interval else "")


def separated(interval) -> bool:
    """Whether a difference's interval leaves out 0 (the two models are told apart)."""
    interval = _interval(interval)
    return bool(interval) and (interval[0] > 0 or interval[1] < 0)


def p_text(p) -> str:
    """A p-value as a reader wants it: "= 0.052", "< 0.001"."""
    return "" if not is_number(p) else "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _interval(value) -> list[float] | None:
    """A stored interval [low, high] of two numbers, or None (missing, or a file someone else wrote)."""
    ok = isinstance(value, list) and len(value) == 2 and all(is_number(bound) for bound in value)
    return value if ok else None


def _score(value) -> float:
    return value if is_number(value) else -1.0
