"""The store under attack: readers during compaction, duplicate files across splits, damaged segments, an
accidentally shortened manifest, a hand-edited attribute (issue 26, items 2, 3, 4, 7 and part of 13)."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from test_store import ATTRS, DIM, FRAMES, add, features_of, rows_of, stored_features

from pipeline import store
from pipeline.classify.sequences import SequenceConfig, SequenceSource, load_videos
from pipeline.classify.splits import assign_splits
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.run import extract_features
from pipeline.store.index import load_index

from helpers import TINY_CONFIG, tiny_backbone

NAMES = [f"v{i}" for i in range(8)]
LABELS = {name: "ab"[i % 2] for i, name in enumerate(NAMES)}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True)


def two_segment_store(path):
    """8 videos in 2 segments (4 merged, then 4 more)."""
    add(path, rows_of(NAMES[:4], LABELS))
    add(path, rows_of(NAMES, LABELS))
    assert len(list(store.segments_dir(path).iterdir())) == 2
    return path


def expected(video_id):
    return features_of(video_id).astype(np.float16).astype(np.float32)


def assert_source_right(source, videos):
    x, mask = source.read(np.arange(len(videos)))
    assert mask.all()
    for i, video_id in enumerate(videos["video_id"]):
        np.testing.assert_array_equal(x[i], expected(video_id))


def merge_fewer_rows(path, names):
    """Another process: `features` on a manifest that lost rows, their grace period over (so it compacts)."""
    store.grace.KEEP_S = 0.0
    report = store.merge_shards(path, ATTRS, rows_of(names, LABELS))
    os._exit(0 if report.compacted else 1)


def referenced(path):
    with h5py.File(path, "r") as f:
        return set(f["segments"]["name"].asstr()[:])


# --- item 2: a streaming reader and a concurrent compaction ---------------------------------------------------


@pytest.mark.parametrize("writer", ["compact", "retire"])
def test_a_streaming_reader_keeps_its_frames_while_another_process_compacts(tmp_path, writer):
    path = two_segment_store(tmp_path / "s.h5")
    videos = store.read_videos(path)
    source = SequenceSource(path, videos, SequenceConfig(FRAMES), in_memory=False)
    source.read([0])  # training has begun: the store is open, its first segment read
    if writer == "compact":
        done = cli("compact", str(path))
        assert done.returncode == 0, done.stderr
        assert "reader" in done.stderr  # it says why it kept the old segments
    else:  # the case: a run on a manifest with 5 rows removed retires them and compacts
        child = multiprocessing.get_context("fork").Process(target=merge_fewer_rows, args=(path, NAMES[:3]))
        child.start()
        child.join()
        assert child.exitcode == 0
    assert_source_right(source, videos)  # all 8, the last one included: no zeros
    assert len(referenced(path)) == 1 and len(list(store.segments_dir(path).iterdir())) == 3  # the old two kept
    source.close()
    store.compact(path)  # the next writer after the reader deletes them
    assert {p.name for p in store.segments_dir(path).iterdir()} == referenced(path)


def test_a_source_opened_after_a_merge_moved_the_frames_finds_them_by_key(tmp_path, monkeypatch):
    path = two_segment_store(tmp_path / "s.h5")
    videos = store.read_videos(path)  # what train read first
    monkeypatch.setattr(store.grace, "KEEP_S", 0.0)
    assert store.merge_shards(path, ATTRS, rows_of(NAMES[5:], LABELS)).compacted  # every offset moved
    kept = videos[videos["video_id"].isin(NAMES[5:])].reset_index(drop=True)
    assert not kept["offset"].equals(store.read_videos(path)["offset"])
    assert_source_right(SequenceSource(path, kept, SequenceConfig(FRAMES), in_memory=False), kept)
    with pytest.raises(store.StoreError, match=f"5 videos .* left the feature store {path} while it was being opened"):
        SequenceSource(path, videos, SequenceConfig(FRAMES), in_memory=True)


def test_a_reader_keeps_its_frames_through_a_recovery_and_the_merges_after_it(tmp_path):
    path = two_segment_store(tmp_path / "s.h5")
    videos = store.read_videos(path)
    source = SequenceSource(path, videos, SequenceConfig(FRAMES), in_memory=False)
    source.read([0])
    recovered = cli("compact", str(path), "--recover")
    assert recovered.returncode == 0, recovered.stderr
    store.merge_shards(path, ATTRS, rows_of(NAMES, LABELS))
    store.compact(path)  # writes a new segment; the two the reader reads stay
    assert_source_right(source, videos)
    assert len(list(store.segments_dir(path).iterdir())) == 3
    source.close()
    store.compact(path)
    assert len(list(store.segments_dir(path).iterdir())) == 1
    assert sorted(stored_features(path)) == sorted(NAMES)


def hold_a_reader(path, ready):
    source = SequenceSource(path, store.read_videos(path), SequenceConfig(FRAMES), in_memory=False)
    source.read([0])
    ready.set()
    time.sleep(600)


def test_a_reader_killed_by_sigkill_holds_nothing_back(tmp_path):
    path = two_segment_store(tmp_path / "s.h5")
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    reader = context.Process(target=hold_a_reader, args=(path, ready))
    reader.start()
    assert ready.wait(30)
    store.compact(path)
    assert len(list(store.segments_dir(path).iterdir())) == 3  # kept for the reader
    os.kill(reader.pid, signal.SIGKILL)
    reader.join()
    store.compact(path)  # the kernel released its lock: nothing waits for a dead reader
    assert len(list(store.segments_dir(path).iterdir())) == 1


def killed_recovery(path):
    store.maintenance.write_index = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    store.recover(path)


def test_a_recovery_killed_before_its_index_is_written_leaves_the_old_index_in_place(tmp_path):
    path = two_segment_store(tmp_path / "s.h5")
    before = store.read_videos(path)
    child = multiprocessing.get_context("fork").Process(target=killed_recovery, args=(path,))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    pd.testing.assert_frame_equal(store.read_videos(path), before)  # the store still opens as it was
    assert Path(f"{path}.broken").is_file()
    assert store.recover(path)["videos"] == 8


# --- item 3: one file under several ids, and copies of its bytes, in one split ----------------------------------


@pytest.mark.slow  # a real CNN and training, or four subprocesses
def test_one_file_under_three_ids_and_copies_of_its_bytes_never_straddle_splits(tmp_path, make_video):
    from pipeline.classify.config import TrainConfig
    from pipeline.classify.train import train

    clips = [make_video(f"clips/v{i}.mp4", seed=i) for i in range(8)]
    (tmp_path / "copies").mkdir()
    copies = [shutil.copyfile(clip, tmp_path / "copies" / f"copy{i}.mp4") for i, clip in enumerate(clips)]
    rows = [(str(clip), f"c{i % 2}", f"v{i}-{n}") for i, clip in enumerate(clips) for n in range(3)]
    rows += [(str(copy), f"c{i % 2}", f"copy{i}") for i, copy in enumerate(copies)]
    csv = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["path", "label", "video_id"]).to_csv(csv, index=False)
    path = tmp_path / "s.h5"
    summary = extract_features(read_manifest(csv), path, tiny_backbone(), TINY_CONFIG, progress=False)
    assert summary.exit_code == 0 and len(store.read_videos(path)) == 32
    videos = load_videos(path)
    source = videos["video_id"].str.extract(r"(\d+)")[0]  # which clip each row shows
    for seed in range(6):
        split = assign_splits(videos, seed=seed, test_size=0.3)
        assert split.groupby(source).nunique().eq(1).all(), f"seed {seed}: {split.groupby(source).unique()}"
    assert videos.groupby(source)["content"].nunique().eq(1).all() and videos["content"].nunique() == 8
    result = train(path, tmp_path / "run", TrainConfig(models=("mean",), test_size=0.3), progress=False)
    splits = pd.read_csv(next(result.run_dir.rglob("splits.csv")))
    assert splits.groupby(splits["video_id"].str.extract(r"(\d+)")[0])["split"].nunique().eq(1).all()
    assert set(splits["split"]) >= {"train", "test"}


def test_a_store_written_before_content_ids_and_segment_records_still_works(tmp_path):
    path = two_segment_store(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:  # the index as an older version wrote it
        for name in ("videos/content", "segments/bytes", "segments/digest", "retired"):
            del f[name]
    assert set(store.read_videos(path)["content"]) == {""}
    store.require_segments(path)
    rows = rows_of(NAMES + ["w"], LABELS)
    add(path, rows)  # an appending merge extends the old table and records the segments
    assert list(store.read_videos(path)["video_id"]) == NAMES + ["w"]
    with h5py.File(path, "r") as f:
        assert (f["segments"]["bytes"][:] > 0).all() and len(f["videos"]["content"]) == 9
    segment = store.segments_dir(path) / sorted(referenced(path))[0]
    with h5py.File(path, "r+") as f:
        del f["segments/bytes"], f["segments/digest"]
    os.truncate(segment, segment.stat().st_size // 2)  # unrecorded: found by opening it
    with pytest.raises(store.StoreError, match=f"has 1 damaged segment file.*{segment.name}: unreadable"):
        store.require_segments(path)


# --- item 4: a truncated or changed segment --------------------------------------------------------------------


@pytest.mark.slow  # a real CNN and training, or four subprocesses
def test_a_truncated_segment_is_named_by_every_command_and_a_recovery_re_embeds_what_was_lost(tmp_path, make_video):
    clips = [make_video(f"v{i}.mp4", seed=i) for i in range(6)]
    csv = tmp_path / "m.csv"
    path = tmp_path / "f" / "s.h5"
    backbone = tiny_backbone()

    def features(count):
        pd.DataFrame({"path": [str(c) for c in clips[:count]], "label": ["ab"[i % 2] for i in range(count)]}).to_csv(
            csv, index=False
        )
        return extract_features(read_manifest(csv), path, backbone, TINY_CONFIG, progress=False)

    features(4)
    features(6)
    before = stored_features(path)
    last = (
        store.segments_dir(path)
        / sorted(referenced(path), key=lambda n: (store.segments_dir(path) / n).stat().st_mtime_ns)[-1]
    )
    subprocess.run(["truncate", "-s", str(last.stat().st_size // 2), str(last)], check=True)

    options = ["--weights", "none", "--backbone", "vgg16", "--image-size", "32", "--sampling", "uniform:4"]
    runs = {
        "features": cli("features", "--manifest", str(csv), "--store", str(path), *options, "--precision", "float32"),
        "inspect": cli("inspect", str(path)),
        "train": cli("train", "--store", str(path), "--model", "mean", "--run", str(tmp_path / "run")),
        "compact": cli("compact", str(path)),
    }
    for command, result in runs.items():
        assert result.returncode == 2, (command, result.stderr)
        assert f"{last}: " in result.stderr and "truncated" in result.stderr, (command, result.stderr)
        assert f"compact {path} --recover" in result.stderr and "Traceback" not in result.stderr
    assert f"DAMAGED segment file {last}" in runs["inspect"].stdout
    with pytest.raises(store.StoreError, match="truncated"):
        load_videos(path)  # what train opens a store with
    recovered = cli("compact", str(path), "--recover")
    assert recovered.returncode == 0 and last.name in recovered.stderr, recovered.stderr
    again = features(6)
    assert (again.new, again.skipped, again.exit_code) == (2, 4, 0)  # what the damaged segment held, no more
    store.require_in_sync(path)
    after = stored_features(path)
    assert sorted(after) == sorted(before)
    for video_id, frames in before.items():
        np.testing.assert_array_equal(after[video_id], frames)  # the same backbone: the same features again


def test_a_segment_changed_in_place_or_grown_is_refused(tmp_path):
    path = two_segment_store(tmp_path / "s.h5")
    first, second = sorted(referenced(path))
    with open(store.segments_dir(path) / first, "r+b") as handle:  # same size, other bytes at its end
        handle.seek(-100, os.SEEK_END)
        handle.write(b"\xff" * 100)
    with open(store.segments_dir(path) / second, "ab") as handle:
        handle.write(b"more")
    with pytest.raises(store.StoreError) as refused:
        store.require_segments(path)
    assert f"{first}: its bytes differ" in str(refused.value) and f"{second}: " in str(refused.value)
    assert "(grown)" in str(refused.value)
    with pytest.raises(store.StoreError, match="has 2 damaged"):
        add(path, rows_of(NAMES + ["w"], LABELS))  # a merge refuses too, leaving its shards for after a recovery
    assert store.shard_keys(path)[0] == {"key-w"}


# --- item 7: an accidentally shortened manifest ----------------------------------------------------------------


def test_a_shortened_manifest_restored_re_embeds_nothing(tmp_path, make_video):
    clips = [make_video(f"v{i}.mp4", seed=i) for i in range(8)]
    full = tmp_path / "m1.csv"
    pd.DataFrame({"path": [str(c) for c in clips], "label": ["ab"[i % 2] for i in range(8)]}).to_csv(full, index=False)
    csv, path, backbone = tmp_path / "m.csv", tmp_path / "s.h5", tiny_backbone()
    shutil.copyfile(full, csv)

    def features():
        return extract_features(read_manifest(csv), path, backbone, TINY_CONFIG, progress=False)

    assert features().new == 8
    before = stored_features(path)
    csv.write_text("".join(full.read_text().splitlines(keepends=True)[:2]))  # head -2 m1.csv > m.csv
    shortened = features()
    assert (shortened.new, shortened.skipped) == (0, 1) and len(store.read_videos(path)) == 1
    assert "retired: 7 videos" in store.summary(path)
    shutil.copyfile(full, csv)
    restored = features()
    assert (restored.new, restored.skipped, restored.exit_code) == (0, 8, 0)  # nothing embedded again
    after = stored_features(path)
    assert list(after) == list(before)
    for video_id, frames in before.items():
        np.testing.assert_array_equal(after[video_id], frames)
    assert "retired" not in store.summary(path).split("last run")[0]


def test_retired_frames_are_reclaimed_after_the_grace_period_or_by_compact(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    add(path, rows_of(NAMES, LABELS))
    report = store.merge_shards(path, ATTRS, rows_of(NAMES[:2], LABELS))  # 6 of 8 retired: kept, not compacted
    assert not report.compacted and report.changes["retired"] == 6
    assert store.stored_keys(path)[0] == {f"key-{n}" for n in NAMES}  # `features` queues none of them
    store.merge_shards(path, ATTRS, rows_of(NAMES[:2], LABELS))  # a rerun within the grace period keeps them
    with h5py.File(path, "r") as f:
        assert f["features"].shape[0] == 8 * FRAMES and len(f["retired"]["key"]) == 6
    monkeypatch.setattr(store.grace, "KEEP_S", 0.0)  # ... the grace period is over
    assert store.merge_shards(path, ATTRS, rows_of(NAMES[:2], LABELS)).compacted  # even a no-op run drops them
    with h5py.File(path, "r") as f:
        assert f["features"].shape[0] == 2 * FRAMES and len(f["retired"]["key"]) == 0
    assert store.stored_keys(path)[0] == {"key-v0", "key-v1"}

    monkeypatch.setattr(store.grace, "KEEP_S", 7 * 86400.0)
    other = tmp_path / "other.h5"
    add(other, rows_of(NAMES, LABELS))
    store.merge_shards(other, ATTRS, rows_of(NAMES[:2], LABELS))
    result = store.compact(other)  # reclaims them now
    assert (result["retired_reclaimed"], result["frames_after"]) == (6, 2 * FRAMES)
    assert store.stored_keys(other)[0] == {"key-v0", "key-v1"}


def test_retired_frames_move_with_an_automatic_compaction_and_come_back(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    add(path, rows_of(NAMES, LABELS))
    store.merge_shards(path, ATTRS, rows_of(NAMES[:1], LABELS))  # 7 retired, kept
    replaced = [store.VideoRow("v0", "key-v0-new", "/v/v0.mp4", "a", "train", "", 0)]  # and v0's file changed
    with store.shard_run(path) as folder:
        shard = store.Shard()
        shard.add_video(replaced[0], features_of("v0") + 1, np.arange(FRAMES), np.arange(FRAMES) / 10, 30, 10, 64, 48)
        store.write_shard(folder, shard, DIM, "float16")
    monkeypatch.setattr(store.sync, "MAX_SEGMENTS", 1)  # 2 segments: past the limit, it compacts
    assert store.merge_shards(path, ATTRS, replaced).compacted
    assert len(list(store.segments_dir(path).iterdir())) == 1
    assert store.read_videos(path)["key"].tolist() == ["key-v0-new"]
    assert len(load_index(path).retired) == 8  # the 7, and v0's old content
    store.merge_shards(path, ATTRS, rows_of(NAMES, LABELS))  # the old manifest again: all 8 from the kept frames
    assert sorted(stored_features(path)) == sorted(NAMES)
    for video_id, frames in stored_features(path).items():
        np.testing.assert_array_equal(frames, expected(video_id))


# --- item 13 (part): a hand-edited feature_config ----------------------------------------------------------------


def test_a_hand_edited_feature_config_names_the_store_and_the_attribute(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(NAMES[:2], LABELS))
    with h5py.File(path, "r+") as f:
        f.attrs["feature_config"] = '{"backbone": "test",'
    with pytest.raises(store.StoreError, match=f"attribute 'feature_config' of the feature store {path} is not a JSON"):
        store.read_attrs(path)
    shown = cli("inspect", str(path))
    assert shown.returncode == 2 and "'feature_config'" in shown.stderr and f"compact {path} --recover" in shown.stderr
    with h5py.File(path, "r+") as f:
        f.attrs["feature_config"] = "[1, 2]"  # JSON, but not an object
    with pytest.raises(store.StoreError, match="a JSON list, not an object"):
        store.summary(path)
    store.recover(path)  # keeps the other attributes: the store still belongs to its manifest and config
    assert store.read_attrs(path)["config_hash"] == ATTRS["config_hash"]
    with pytest.raises(store.StoreError, match="another config"):
        store.check_owner(path, {**ATTRS, "config_hash": "c2"})
    store.merge_shards(path, ATTRS, rows_of(NAMES[:2], LABELS))
    assert store.read_attrs(path)["feature_config"] == ATTRS["feature_config"]
