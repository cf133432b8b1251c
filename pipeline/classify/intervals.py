"""How sure a run's scores are: 95% intervals for accuracies, macro-F1 and the difference of two models.

A test split of 48 videos cannot tell 0.98 from 1.00, and one of 3 videos cannot tell anything, so
every headline number of a run carries an interval, computed here once at train time:

- an accuracy (k of n right): Wilson's score interval, which stays inside 0..1 and keeps its
  coverage for small n and for scores near 0 or 1 (the plain normal interval collapses at 3/3);
- macro-F1: a percentile bootstrap over test videos (seeded, so a rerun repeats it), only from
  `BOOTSTRAP_MIN` videos on and only where the resamples differ: resampling videos that are all
  right gives the interval [1, 1], a certainty the data does not have (the accuracy's Wilson
  interval still says how sure a perfect score is);
- the difference of two models' accuracies on the same videos: Newcombe's square-and-add interval
  for paired proportions (his method 10, from the two Wilson intervals and the models' correlation,
  with its continuity-corrected correlation), and McNemar's exact test on the videos where exactly
  one of the two is right. Both use the pairing: two models that fail on the same hard videos
  differ less than their separate intervals suggest.

Plain numpy and scipy (which scikit-learn needs anyway); no statsmodels.
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%
RESAMPLES = 1000  # bootstrap resamples of the test videos
SEED = 0
BOOTSTRAP_MIN = 20  # fewer test videos than this: no bootstrap interval (see the module docstring)
CHUNK = 4_000_000  # resampled video indices held at once (32 MB), so a large test split stays in memory


def wilson(successes: int, n: int, z: float = Z) -> list[float] | None:
    """Wilson's score interval [low, high] for `successes` of `n`; None without trials."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [0.0 if successes == 0 else max(0.0, centre - half), 1.0 if successes == n else min(1.0, centre + half)]


def bootstrap_macro_f1(
    true: np.ndarray, predicted: np.ndarray, classes: int, resamples: int = RESAMPLES, seed: int = SEED
) -> list[float] | None:
    """Percentile interval of macro-F1 (over the classes present in each resample's truth, as
    `classification_metrics` averages) from `resamples` resamples of the test videos; None below
    `BOOTSTRAP_MIN` videos, or when every resample scores the same. Vectorised: per-class counts of
    all resamples come from one bincount."""
    true, predicted = np.asarray(true, np.int64), np.asarray(predicted, np.int64)
    n = len(true)
    if n < BOOTSTRAP_MIN:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        picked = rng.integers(0, n, (count, n))
        cells = np.arange(count)[:, None] * classes
        t, p = true[picked] + cells, predicted[picked] + cells

        def tally(values):
            return np.bincount(values.ravel(), minlength=count * classes).reshape(count, classes)

        support, guessed, hits = tally(t), tally(p), tally(t[true[picked] == predicted[picked]])
        f1 = 2 * hits / np.maximum(support + guessed, 1)  # 0 where a class is neither true nor predicted
        present = support > 0
        scores.append((f1 * present).sum(1) / present.sum(1))
    scores = np.concatenate(scores)
    if scores.min() == scores.max():
        return None  # every resample scores the same (all videos right): the bootstrap cannot say how sure that is
    low, high = np.quantile(scores, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return [float(low), float(high)]


def paired_difference(first_right: np.ndarray, second_right: np.ndarray) -> dict | None:
    """The accuracy of a first model minus a second's on the same videos (boolean arrays, one entry
    per video: right or not), with Newcombe's paired 95% interval and McNemar's exact p-value;
    None without videos.

    Returns difference, interval [low, high], p_value, and the discordant counts first_only (videos
    only the first gets right) and second_only.
    """
    first, second = np.asarray(first_right, bool), np.asarray(second_right, bool)
    n = len(first)
    if not n:
        return None
    both = int((first & second).sum())
    first_only, second_only = int((first & ~second).sum()), int((~first & second).sum())
    neither = n - both - first_only - second_only
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    (l1, u1), (l2, u2) = wilson(both + first_only, n), wilson(both + second_only, n)
    phi = _correlation(both, first_only, second_only, neither)
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 + (p2 - l2) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)))
    return {
        "difference": p1 - p2,
        "interval": [max(-1.0, p1 - p2 - down), min(1.0, p1 - p2 + up)],
        "p_value": mcnemar_exact(first_only, second_only),
        "first_only": first_only,
        "second_only": second_only,
        "videos": n,
    }


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """McNemar's exact two-sided p-value: how likely a split of the discordant videos at least this
    uneven is when both models are equally good (a fair coin over first_only + second_only videos)."""
    from scipy.stats import binom

    discordant = first_only + second_only
    if not discordant:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(first_only, second_only), discordant, 0.5)))


def _correlation(both: int, first_only: int, second_only: int, neither: int) -> float:
    """Newcombe's estimate of the correlation of the two models' outcomes (the phi coefficient, a
    positive one shrunk by n/2 towards 0 as a continuity correction); 0 where a margin is empty."""
    n = both + first_only + second_only + neither
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    if not margins:
        return 0.0
    excess = both * neither - first_only * second_only
    if excess > n / 2:
        excess -= n / 2
    elif excess >= 0:
        excess = 0
    return excess / math.sqrt(margins)
