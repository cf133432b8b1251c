"""Reports of training runs: files, confusion matrices against the predictions, edge cases, index."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.metrics import classification_metrics
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.train import train
from pipeline.cli import main
from pipeline.cli.common import EXIT_OK
from pipeline.report import figures, index, pages
from pipeline.report.confusion import confusion_tables, top_confusions
from pipeline.runs import folders

from helpers import write_store

LABELS = ["a", "b", "c", "d"]


def baseline_run(store_path, run_dir, models=("mean", "single-frame")):
    return train(
        store_path,
        run_dir,
        TrainConfig(models=models, seq_len=8, epochs=2, network=SequenceModelConfig(units=4)),
        progress=False,
    )


@pytest.fixture
def run(toy_run):
    return toy_run.run_dir


def test_report_pages_images_and_tables_exist(run):
    page = (run / "index.html").read_text()
    markdown = (run / "report.md").read_text()
    for name in ("gru", "mean", "single-frame"):
        for suffix in ("confusion.png", "confusion-normalized.png", "confusion.csv", "confusion-normalized.csv"):
            assert (run / f"{name}-{suffix}").stat().st_size > 0
            assert f"{name}-{suffix}" in page and f"{name}-{suffix}" in markdown
    assert (run / "gru-curves.png").is_file() and not (run / "mean-curves.png").exists()
    assert "<title>Run toy-run</title>" in page and markdown.startswith(
        "# Run toy-run\n"
    )  # the run's name, not a model's
    for text in (
        "Results on the test split",
        "Time order",
        "videos per class and split",
        "moov atom not found",
        "Per class",
        "Most frequent confusions",
        "Misclassified test videos",
        "random weights, offline",
        "backbone",
    ):
        assert text in page and text in markdown, text
    assert "class='warning'" in page  # the fallback note from the store's attrs
    assert not re.search(r"<script|<link|src=['\"]https?:|url\(", page), "the page must be self-contained"
    assert "&lt;NA&gt;" not in page and "| nan |" not in markdown


def test_confusion_csvs_agree_with_predictions_csv(run):
    predictions = pd.read_csv(run / "model" / "predictions.csv", dtype=str)
    for name, rows in predictions.groupby("model"):
        counts = pd.read_csv(run / f"{name}-confusion.csv", index_col=0)
        expected = pd.crosstab(rows["true"], rows["predicted"]).reindex(index=LABELS, columns=LABELS, fill_value=0)
        np.testing.assert_array_equal(counts.to_numpy(), expected.to_numpy())
        assert list(counts.index) == LABELS and list(counts.columns) == LABELS
        normalized = pd.read_csv(run / f"{name}-confusion-normalized.csv", index_col=0)
        np.testing.assert_allclose(normalized.sum(axis=1), 1.0)
        np.testing.assert_allclose(
            normalized.to_numpy(), expected.to_numpy() / expected.to_numpy().sum(1, keepdims=True)
        )


def test_index_lists_runs_newest_first_and_report_command_rewrites(run, capsys):
    second = baseline_run(
        write_store(run.parent.parent / "features" / "toy" / "other.h5", LABELS * 6), run.parent / "later-run"
    ).run_dir
    config = json.loads((second / "model" / "config.json").read_text())
    config["created"] = "2999-01-01T00:00:00+00:00"
    (second / "model" / "config.json").write_text(json.dumps(config))
    (run.parent / "not-a-run").mkdir()
    assert main(["report", "--reports", str(run.parent)]) == EXIT_OK
    assert capsys.readouterr().out.split() == [str(second / "index.html"), str(run / "index.html")]
    index = (run.parent / "index.html").read_text()
    assert index.index("later-run/index.html") < index.index("toy-run/index.html")
    summary = json.loads((run / "run.json").read_text())
    assert summary["kind"] == "classification" and summary["model"].startswith("gru (+ mean, single-frame)")
    assert summary["metrics"]["accuracy"] == json.loads((run / "model" / "metrics.json").read_text())["gru"]["accuracy"]


def test_report_of_an_empty_test_split_still_renders(tmp_path):
    path = write_store(tmp_path / "features" / "toy" / "s.h5", ["a", "b"] * 8, splits=["train"] * 12 + ["val"] * 4)
    run = baseline_run(path, tmp_path / "reports" / "no-test").run_dir
    page = (run / "index.html").read_text()
    assert "The test split is empty" in page and "The test split has no videos of 2 class(es): a, b" in page
    assert not list(run.glob("*-confusion*"))
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["mean"]["accuracy"] is None and metrics["mean"]["test_videos"] == 0


def test_report_with_classes_missing_from_the_test_split(tmp_path):
    labels = ["a", "b", "c"] * 6
    splits = [
        ("test" if (i >= 12 and label != "c") else "val" if i >= 9 else "train") for i, label in enumerate(labels)
    ]
    path = write_store(tmp_path / "features" / "toy" / "s.h5", labels, splits=splits)
    run = baseline_run(path, tmp_path / "reports" / "missing").run_dir
    assert "The test split has no videos of 1 class(es): c." in (run / "index.html").read_text()
    per_class = json.loads((run / "model" / "metrics.json").read_text())["mean"]["per_class"]
    assert per_class["c"]["support"] == 0 and per_class["c"]["recall"] is None
    counts = pd.read_csv(run / "mean-confusion-normalized.csv", index_col=0)
    assert counts.loc["c"].isna().all()  # no test videos: an empty row, not zeros


def test_classification_metrics_match_hand_computed_values():
    true = np.array([0, 0, 1, 1, 2])
    probabilities = np.array(
        [[0.7, 0.2, 0.1, 0.0], [0.2, 0.5, 0.3, 0.0], [0.1, 0.8, 0.1, 0.0], [0.6, 0.3, 0.1, 0.0], [0.1, 0.1, 0.7, 0.1]]
    )
    metrics = classification_metrics(true, probabilities, LABELS)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["top3_accuracy"] == pytest.approx(1.0)
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_class"]["d"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert metrics["macro_f1"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))  # over the classes with test videos
    assert "top5_accuracy" not in metrics  # k must be below the number of classes
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, 4)), LABELS)
    assert empty["accuracy"] is None and empty["test_videos"] == 0


def test_confusion_matrix_of_101_classes_stays_readable(tmp_path):
    from PIL import Image

    labels = [f"Class{i:03d}" for i in range(101)]
    rng = np.random.default_rng(0)
    true = np.repeat(labels, 5)
    predicted = true.copy()
    predicted[rng.random(len(true)) < 0.2] = rng.choice(labels, (rng.random(len(true)) < 0.2).sum() or 1)[0]
    predicted[true == "Class007"] = "Class090"  # one pair confused all the time
    counts, normalized = confusion_tables(pd.Series(true), pd.Series(predicted), labels)
    for frame, rates in ((counts, False), (normalized, True)):
        image = Image.open(
            figures.save_figure(figures.plot_confusion(frame, "big", normalized=rates), tmp_path / f"cm-{rates}.png")
        )
        assert 1500 <= image.size[0] <= 3200 and 1500 <= image.size[1] <= 3200
    top = top_confusions(counts)
    assert top.iloc[0][["true", "predicted", "videos"]].tolist() == ["Class007", "Class090", 5]
    assert top.iloc[0]["share of true class"] == 1.0 and len(top) <= 20
    order = figures.display_order(counts)
    assert sorted(order) == labels and abs(order.index("Class007") - order.index("Class090")) == 1


HOSTILE_LABELS = [
    "<script>alert(1)</script>",
    "a|b",
    "two\nlines",
    "$\\bogus$",
    "<img src=x onerror=alert(1)>",
    "`tick`",
]


def _html_tags(page: str) -> list[tuple[str, dict]]:
    from html.parser import HTMLParser

    found = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Tags().feed(page)
    return found


def assert_no_markup_injected(page: str) -> None:
    """Only the report's own tags, no script but the runs index's own, no event handler, images only of the
    report's PNGs and strips."""
    from pipeline.report import sortable

    own = sortable.script()
    assert page.count("<script") == page.count(own)  # the index's own script, word for word, and no other
    tags = _html_tags(page.replace(own, ""))
    assert {tag for tag, _ in tags} <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "h3",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "img",
        "a",
        *("div", "span", "br", "nav", "details", "summary", "figure", "figcaption", "input"),  # pages' own, too
    }, tags
    assert not [attrs for _, attrs in tags if any(name.startswith("on") for name in attrs)]
    assert all(
        attrs["src"].endswith(".png") or re.fullmatch(r"strips/[0-9a-f]{16}\.jpg", attrs["src"])
        for tag, attrs in tags
        if tag == "img"
    )
    assert not [attrs for tag, attrs in tags if tag == "a" and re.match(r"\s*javascript:", attrs["href"], re.I)]


def assert_markdown_literal(markdown: str) -> None:
    """Tables keep their column count, and no HTML, code span, link or math comes from the data."""
    assert not re.search(r"<(script|img)", markdown)
    assert not re.search(r"(?<!\\)[`$]", markdown)
    lines = markdown.split("\n")
    for number, line in enumerate(lines):
        if line.startswith("| ") and lines[number - 1].startswith("|"):  # a row: as many cells as the line above
            assert len(re.findall(r"(?<!\\)\|", line)) == len(re.findall(r"(?<!\\)\|", lines[number - 1])), line
        if number and lines[number - 1].startswith("|") and line:
            assert line.startswith("|"), f"a table broken by a newline at: {line!r}"


def test_hostile_labels_train_and_report_with_no_raw_markup(tmp_path, capsys):
    labels = HOSTILE_LABELS * 6
    hostile_name = "d<img src=y onerror=alert(2)>|`$z$`"  # dataset (the store's folder) and run names too
    path = write_store(
        tmp_path / "features" / hostile_name / "s.h5", labels, failures=["<script>alert('failure')</script> | `x`"]
    )
    run = baseline_run(path, tmp_path / "reports" / hostile_name, ("gru", "mean")).run_dir
    assert main(["report", str(run)]) == EXIT_OK  # and the report command redraws the figures too
    for page in (run / "index.html", run.parent / "index.html"):
        assert_no_markup_injected(page.read_text())
    page = (run / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "$\\bogus$" in page and "a|b" in page
    markdown = (run / "report.md").read_text()
    assert_markdown_literal(markdown)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "\\$\\\\bogus\\$" in markdown and "a\\|b" in markdown
    assert "two lines" in markdown and "\\`tick\\`" in markdown
    assert (run / "gru-confusion.png").stat().st_size > 0 and (run / "gru-curves.png").stat().st_size > 0


def test_runs_index_escapes_every_value_of_run_json(tmp_path, caplog):
    root = tmp_path / "reports"
    for name, summary in {
        "evil": {
            "created": "<script>alert(1)</script>",
            "dataset": "<img src=x onerror=alert(1)>",
            "kind": "<b>k</b>",
            "model": "m</td><td>",
            "feature_config": {"backbone": "<svg onload=alert(1)>"},
            "metrics": {"accuracy": "<i>1</i>", "macro_f1": 0.5, "<u>other</u>": 2.0},
        },
        "<a onclick=x>": {"created": 5, "metrics": []},
    }.items():
        (root / name).mkdir(parents=True)
        (root / name / "run.json").write_text(json.dumps(summary))
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    (root / ".run.partial-x").mkdir()  # a run still being written
    (root / ".run.partial-x" / "run.json").write_text(json.dumps({"dataset": "unfinished"}))
    folders.mark(root, "reports")  # these folders are no runs, so the root must say it is one
    page = index.write_index(root).read_text()
    assert_no_markup_injected(page)
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        and ">&lt;u&gt;other&lt;/u&gt;</th>" in page  # a metric's own column, its value sorted as a number
        and "<td data-value='2.0'>2</td>" in page
        and "&lt;i&gt;1&lt;/i&gt;" in page
    )
    assert (
        "broken" not in page
        and "unfinished" not in page
        and "broken/run.json is not listed in the runs index" in caplog.text
    )


def test_markdown_text_escapes_what_markdown_would_interpret():
    assert pages.markdown_text("a|b\nc") == "a\\|b c"
    assert pages.markdown_text("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert (
        pages.markdown_text("[x](javascript:alert(1)) `c` *e* $m$ #h")
        == "\\[x\\](javascript:alert(1)) \\`c\\` \\*e\\* \\$m\\$ \\#h"
    )


def received_run(run, tmp_path, name="received"):
    """A copy of `run`, as someone would send it."""
    import shutil

    return shutil.copytree(run, tmp_path / "reports" / name)


@pytest.mark.parametrize("hostile", ["/tmp/x/OUTSIDE", "../x", "javascript:alert(1);void", ".hidden"])
def test_model_names_that_are_not_plain_names_are_refused(run, tmp_path, caplog, hostile):
    received = received_run(run, tmp_path)
    metrics = json.loads((received / "model" / "metrics.json").read_text())
    metrics[hostile] = metrics.pop("mean")
    (received / "model" / "metrics.json").write_text(json.dumps(metrics))
    before = sorted(path for path in tmp_path.rglob("*"))
    assert main(["report", str(received)]) == 2
    assert f"{received / 'model' / 'metrics.json'}: {hostile!r} is not a model name" in caplog.text
    assert sorted(path for path in tmp_path.rglob("*")) == before


def test_link_targets_are_quoted_in_html():
    block = pages.html_block(("links", [("csv", "a' onclick='x.csv")]))
    assert "href='a%27%20onclick%3D%27x.csv'" in block and "onclick='" not in block


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("metrics.json", {"gru": {}}, "model 'gru' has no kind"),
        ("metrics.json", ["gru"], "holds a JSON list"),
        ("metrics.json", {"gru": 1}, "metrics of model 'gru' are not a JSON object"),
        ("config.json", {"dataset": "x"}, "has no store"),
        ("labels.json", {"a": 1}, "holds a JSON dict"),
    ],
)
def test_malformed_run_files_are_named_with_exit_2(run, tmp_path, caplog, file, content, message):
    received = received_run(run, tmp_path)
    (received / "model" / file).write_text(json.dumps(content))
    assert main(["report", str(received)]) == 2
    assert str(received / "model" / file) in caplog.text and message in caplog.text


def test_report_of_all_runs_skips_convlstm_and_broken_runs(run, tmp_path, caplog, capsys):
    good = received_run(run, tmp_path, "good")
    broken = received_run(run, tmp_path, "broken")
    (broken / "model" / "metrics.json").write_text(json.dumps({"gru": {}}))
    convlstm = tmp_path / "reports" / "convlstm-mnist" / "model"
    convlstm.mkdir(parents=True)
    (convlstm / "metrics.json").write_text(json.dumps({"mse": 0.1}))
    assert index.training_runs(tmp_path / "reports") == [broken, good]
    assert main(["report", "--reports", str(tmp_path / "reports")]) == 2
    assert capsys.readouterr().out.split() == [str(good / "index.html")]
    assert f"not reporting {broken}" in caplog.text and "1 of 2 runs could not be reported" in caplog.text


def test_one_best_model_rule_prefers_sequence_models_by_validation_accuracy():
    """The run's headline in the index and predict's default model come from this one rule."""
    from pipeline.runs.files import best_model

    metrics = {
        "mean": {"kind": "order-blind", "val_accuracy": 0.9},
        "lstm": {"kind": "sequence", "val_accuracy": None},
        "gru": {"kind": "sequence", "val_accuracy": 0.6},
        "gru2": {"kind": "sequence", "val_accuracy": 0.6},
    }
    assert best_model(metrics) == "gru"  # a sequence model even below a baseline; the first on a tie; None counts as 0
    assert (
        best_model(
            {
                "mean": {"kind": "order-blind", "val_accuracy": 0.4},
                "single-frame": {"kind": "order-blind", "val_accuracy": 0.5},
            }
        )
        == "single-frame"
    )
