"""The 95% intervals of a run's scores against known values, and the rules that read them: which model a run
is listed by (and `predict` uses), and the sentences that say a split is too small to tell models apart."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.classify import intervals
from pipeline.classify.metrics import add_comparisons, classification_metrics, validation_metrics
from pipeline.report.summary import INTERVAL_NOTE, headline_metrics
from pipeline.runs.files import best_model, validation_choice
from pipeline.runs.verdict import noise_notes, score_text, time_order


def test_wilson_interval_matches_the_formula_by_hand_and_scipy():
    from scipy.stats import binomtest

    z = 1.959963984540054
    centre, half = (0.8 + z**2 / 20) / (1 + z**2 / 10), z * math.sqrt(0.016 + z**2 / 400) / (1 + z**2 / 10)
    assert intervals.wilson(8, 10) == pytest.approx([centre - half, centre + half], abs=1e-12)
    assert intervals.wilson(8, 10) == pytest.approx([0.4902, 0.9433], abs=5e-5)  # the textbook value
    for k, n in [(8, 10), (0, 3), (3, 3), (1, 19), (47, 48), (500, 1000)]:
        expected = binomtest(k, n).proportion_ci(method="wilson")
        assert intervals.wilson(k, n) == pytest.approx([expected.low, expected.high], abs=1e-9), (k, n)
    assert intervals.wilson(3, 3)[1] == 1.0 and intervals.wilson(0, 3)[0] == 0.0  # exactly, not 0.9999999
    assert intervals.wilson(0, 0) is None


def paired(both, first_only, second_only, neither):
    first = [True] * both + [True] * first_only + [False] * second_only + [False] * neither
    second = [True] * both + [False] * first_only + [True] * second_only + [False] * neither
    return np.array(first), np.array(second)


def test_paired_difference_matches_newcombe_and_mcnemar_published_values():
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, the paired 2x2 table of Cavo et
    # al. (2012): 59 both, 6 first only, 16 second only, 80 neither. Newcombe's square-and-add interval
    # -0.1186 to -0.0046; McNemar's exact conditional test P = 0.052479.
    result = intervals.paired_difference(*paired(59, 6, 16, 80))
    assert result["difference"] == pytest.approx(-10 / 161)
    assert result["interval"] == pytest.approx([-0.1186, -0.0046], abs=5e-5)
    assert result["p_value"] == pytest.approx(0.052479, abs=5e-7)
    assert (result["first_only"], result["second_only"], result["videos"]) == (6, 16, 161)
    # by hand: five discordant videos all one way, a fair coin: 2 * (1/2)^5
    assert intervals.mcnemar_exact(0, 5) == 2 / 32 and intervals.mcnemar_exact(0, 0) == 1.0
    assert intervals.mcnemar_exact(6, 16) == pytest.approx(2 * sum(math.comb(22, k) for k in range(7)) / 2**22)


def test_three_videos_both_right_give_a_wide_interval_not_certainty():
    """The issue's run: 3 test videos, both models right on all of them, "+0.0 points"."""
    result = intervals.paired_difference(*paired(3, 0, 0, 0))
    low, high = result["interval"]
    assert result["difference"] == 0 and result["p_value"] == 1.0
    assert low == pytest.approx(-(1 - intervals.wilson(3, 3)[0])) and high == pytest.approx(-low)
    assert high > 0.5  # it cannot tell a model that is right on 3 of 3 from one right on 44%
    assert intervals.paired_difference(np.zeros(0, bool), np.zeros(0, bool)) is None


def test_bootstrap_macro_f1_equals_scikit_learn_on_every_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    true = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.7, true, rng.integers(0, 4, 60))
    low, high = intervals.bootstrap_macro_f1(true, predicted, 4, resamples=200, seed=3)
    picked = np.random.default_rng(3).integers(0, 60, (200, 60))  # the same draws (one chunk)
    scores = [
        f1_score(true[row], predicted[row], labels=np.unique(true[row]), average="macro", zero_division=0)
        for row in picked
    ]
    assert [low, high] == pytest.approx(np.quantile(scores, [0.025, 0.975]).tolist())
    assert low < f1_score(true, predicted, average="macro") < high
    assert intervals.bootstrap_macro_f1(true, predicted, 4, resamples=200, seed=3) == [low, high]  # seeded
    assert intervals.bootstrap_macro_f1(true[:19], predicted[:19], 4) is None  # too few videos to resample
    assert intervals.bootstrap_macro_f1(true, true, 4) is None  # all right: every resample says 1.0


def test_bootstrap_chunks_give_the_same_interval_as_one_pass(monkeypatch):
    true = np.arange(50) % 5
    predicted = np.where(np.arange(50) % 3 == 0, (true + 1) % 5, true)
    whole = intervals.bootstrap_macro_f1(true, predicted, 5, resamples=300)
    monkeypatch.setattr(intervals, "CHUNK", 50 * 7)  # 7 resamples at a time
    assert intervals.bootstrap_macro_f1(true, predicted, 5, resamples=300) == pytest.approx(whole)


def test_classification_metrics_store_intervals_beside_the_scores():
    true = np.array([0, 0, 1, 1, 2] * 4)
    probabilities = np.eye(4)[np.array([0, 1, 1, 1, 2] * 4)] * 0.7 + 0.075
    metrics = classification_metrics(true, probabilities, ["a", "b", "c", "d"])
    assert metrics["test_correct"] == 16 and metrics["accuracy"] == 0.8
    assert metrics["accuracy_interval"] == intervals.wilson(16, 20)
    assert metrics["top3_accuracy_interval"] == intervals.wilson(round(metrics["top3_accuracy"] * 20), 20)
    low, high = metrics["macro_f1_interval"]
    assert low <= metrics["macro_f1"] <= high
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, 4)), ["a", "b", "c", "d"])
    assert empty["accuracy_interval"] is None and empty["macro_f1_interval"] is None and empty["test_correct"] == 0
    assert validation_metrics(true[:3], probabilities[:3]) == {
        "val_accuracy": 2 / 3,
        "val_videos": 3,
        "val_accuracy_interval": intervals.wilson(2, 3),
    }
    assert validation_metrics(true[:0], probabilities[:0])["val_accuracy_interval"] is None


def test_comparisons_pair_the_same_videos():
    predictions = pd.DataFrame(
        {
            "model": ["lstm"] * 4 + ["mean"] * 4,
            "video_id": ["a", "b", "c", "d", "d", "c", "b", "a"],  # in another order: paired by video
            "true": ["x", "x", "y", "y", "y", "y", "x", "x"],
            "predicted": ["x", "x", "y", "x", "x", "x", "x", "x"],
        }
    )
    metrics = add_comparisons({"lstm": {"kind": "sequence"}, "mean": {"kind": "order-blind"}}, predictions)
    versus = metrics["lstm"]["versus"]["mean"]
    assert (versus["first_only"], versus["second_only"], versus["difference"]) == (1, 0, 0.25)
    assert "versus" not in metrics["mean"]


def val(kind, accuracy, right, videos):
    return {
        "kind": kind,
        "val_accuracy": accuracy,
        "val_videos": videos,
        "val_accuracy_interval": intervals.wilson(right, videos),
    }


def test_best_model_does_not_pick_by_a_difference_inside_the_noise():
    tiny = {
        "lstm": val("sequence", 2 / 3, 2, 3),
        "gru": val("sequence", 1.0, 3, 3),
        "mean": val("order-blind", 1, 3, 3),
    }
    assert best_model(tiny) == "lstm"  # gru's 3 of 3 is no better than lstm's 2 of 3: the first trained
    assert validation_choice(tiny) == ("lstm", ["lstm", "gru"])
    large = {"lstm": val("sequence", 0.6, 600, 1000), "gru": val("sequence", 0.9, 900, 1000)}
    assert best_model(large) == "gru"  # outside the noise: the better one
    close = {"lstm": val("sequence", 0.88, 880, 1000), "gru": val("sequence", 0.9, 900, 1000)}
    assert best_model(close) == "lstm"
    empty = {"gru": val("sequence", None, 0, 0), "lstm": val("sequence", None, 0, 0)}
    assert best_model(empty) == "gru"  # no validation videos: the first trained
    three = {
        "lstm": val("sequence", 0.5, 500, 1000),
        "gru": val("sequence", 0.9, 900, 1000),
        "gru2": val("sequence", 0.89, 890, 1000),
    }
    assert best_model(three) == "gru"  # lstm is told apart; gru and gru2 are not: the first of those
    baselines = {"mean": val("order-blind", 0.4, 40, 100), "single-frame": val("order-blind", 0.8, 80, 100)}
    assert best_model(baselines) == "single-frame"
    old = {"lstm": {"kind": "sequence", "val_accuracy": 0.5}, "gru": {"kind": "sequence", "val_accuracy": 0.6}}
    assert best_model(old) == "gru"  # a run of an earlier version (no intervals): the old rule


def run_metrics(test_pair, val_pair):
    """Metrics of lstm, gru and mean: `test_pair` (lstm right, mean right) per test video, `val_pair` the
    validation (right, videos) of lstm and gru."""
    lstm, mean = (np.array(flags) for flags in test_pair)
    metrics = {}
    for name, kind, right, (val_right, val_videos) in (
        ("lstm", "sequence", lstm, val_pair[0]),
        ("gru", "sequence", lstm, val_pair[1]),
        ("mean", "order-blind", mean, (0, val_pair[0][1])),
    ):
        metrics[name] = {
            "kind": kind,
            "test_videos": len(right),
            "accuracy": right.mean(),
            "accuracy_interval": intervals.wilson(int(right.sum()), len(right)),
            "macro_f1": right.mean(),
            "macro_f1_interval": None,
            **val(kind, val_right / val_videos if val_videos else None, val_right, val_videos),
        }
    for name in ("lstm", "gru"):
        metrics[name]["versus"] = {"mean": intervals.paired_difference(lstm, mean)}
    return metrics


def test_too_small_splits_are_said_in_one_sentence_each():
    tiny = run_metrics(([True] * 3, [True] * 3), ((3, 3), (2, 3)))
    notes = noise_notes(tiny)
    assert len(notes) == 2
    assert notes[0].startswith("The test split (3 videos) is too small to tell lstm from mean: their difference, +0.0")
    assert "-56.1 to +56.1 points" in notes[0]
    assert notes[1].startswith("The validation split (3 videos) is too small to tell lstm, gru apart")
    assert "lstm 1.000 [0.44,\u00a01.00], gru 0.667 [0.21,\u00a00.94]" in notes[1] and "predict uses, lstm" in notes[1]
    assert "inside the noise" in time_order(tiny)
    assert all(note.count(". ") == 0 for note in notes)  # one sentence

    clear = run_metrics(([True] * 90 + [False] * 10, [False] * 60 + [True] * 40), ((190, 200), (100, 200)))
    assert noise_notes(clear) == []
    sentence = time_order(clear)
    assert "+50.0 points" in sentence and "p < 0.001" in sentence and "time order helped" in sentence
    summary = headline_metrics(clear)
    assert summary["time_order"] == pytest.approx(0.5) and summary["time_order_p"] < 0.001
    assert summary["accuracy_interval"] == clear["lstm"]["accuracy_interval"] and summary["test_videos"] == 100
    assert score_text(clear["lstm"], "accuracy") == "0.900 [0.83,\u00a00.94]"  # a cell breaks before the interval


def test_the_page_describes_the_interval_methods_in_use():
    assert f"{intervals.RESAMPLES} resamples, seed {intervals.SEED}; none below {intervals.BOOTSTRAP_MIN}" in (
        INTERVAL_NOTE
    )
    assert intervals.LEVEL == 0.95 and "95% intervals" in INTERVAL_NOTE
