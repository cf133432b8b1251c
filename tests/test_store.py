"""The feature store on its own (synthetic features, no CNN): O(k) merges, manifest sync, kills, locks, recovery."""

import json
import logging
import multiprocessing
import os
import signal
import threading
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline import store

DIM, FRAMES = 8, 3
ATTRS = {"feature_config": {"backbone": "test"}, "config_hash": "c1", "manifest": "/data/m.csv", "manifest_sha256": "h1"}


def rows_of(names, labels=None, splits=None):
    return [store.VideoRow(name, f"key-{name}", f"/v/{name}.mp4", (labels or {}).get(name, "a"), (splits or {}).get(name, "train"), "", order)
            for order, name in enumerate(names)]


def features_of(name: str) -> np.ndarray:
    """Frames whose values say which video they belong to."""
    seed = sum(map(ord, name))
    return (np.arange(FRAMES * DIM).reshape(FRAMES, DIM) % 7 + seed % 50).astype(np.float32)


def add(path, rows, fail=(), shards=1):
    """One run on manifest `rows`: write the rows not stored yet into `shards` shard files (failing those in `fail`), merge."""
    stored = set(store.read_videos(path)["video_id"]) if path.exists() else set()
    with store.shard_run(path) as folder:
        write(folder, [row for row in rows if row.video_id not in stored], fail, shards)
    return store.merge_shards(path, ATTRS, rows)


def write(folder, rows, fail=(), shards=1):
    for part in np.array_split(np.arange(len(rows)), shards):
        shard = store.Shard()
        for i in part:
            row = rows[i]
            if row.video_id in fail:
                shard.add_failure(row, "decode", "DecodeError", "broken")
            else:
                shard.add_video(row, features_of(row.video_id), np.arange(FRAMES), np.arange(FRAMES) / 10, 30, 10.0, 64, 48)
        store.write_shard(folder, shard, DIM, "float16")


def stored_features(path) -> dict:
    """video_id -> its frames, read with plain h5py as the README shows."""
    videos = store.read_videos(path)
    with h5py.File(path, "r") as f:
        return {v.video_id: f["features"][v.offset:v.offset + v.length].astype(np.float32) for v in videos.itertuples()}


def assert_frames_right(path):
    for video_id, frames in stored_features(path).items():
        np.testing.assert_allclose(frames, features_of(video_id).astype(np.float16))


def test_adding_videos_links_one_segment_and_rewrites_nothing_else(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a", "b", "c"]))
    segment = next(store.segments_dir(path).iterdir())
    before = (segment.stat().st_ino, segment.stat().st_mtime_ns)
    report = add(path, rows_of(["a", "b", "c", "d", "e"]))
    assert report.stored == 5
    assert (segment.stat().st_ino, segment.stat().st_mtime_ns) == before  # the old frames were not copied or touched
    assert len(list(store.segments_dir(path).iterdir())) == 2 and not store.parts_dir(path).exists()
    with h5py.File(path, "r") as f:
        assert f["features"].is_virtual and f["features"].shape == (5 * FRAMES, DIM)
        assert list(f["videos"]["video_id"].asstr()[:]) == ["a", "b", "c", "d", "e"]
    assert_frames_right(path)
    with store.shard_run(path) as folder:  # several shards of one merge become a single segment
        write(folder, rows_of(["f", "g", "h"]), shards=3)
    store.merge_shards(path, ATTRS, rows_of(["a", "b", "c", "d", "e", "f", "g", "h"]))
    assert len(list(store.segments_dir(path).iterdir())) == 3
    assert_frames_right(path)


def test_manifest_is_the_truth_for_metadata(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a", "b", "c", "d"]), fail=("d",))
    segments = sorted(p.name for p in store.segments_dir(path).iterdir())
    edited = rows_of(["c", "a"], labels={"a": "z"}, splits={"c": "test"})  # b and d retired, a relabelled, c moved, reordered
    report = store.merge_shards(path, ATTRS, edited)
    assert sorted(p.name for p in store.segments_dir(path).iterdir()) == segments  # nothing re-extracted or copied
    videos = store.read_videos(path)
    assert list(videos["video_id"]) == ["c", "a"] and list(videos["label"]) == ["a", "z"] and list(videos["split"]) == ["test", "train"]
    assert store.read_failures(path).empty  # d left the manifest: its failure leaves too
    assert report.changes == {"relabelled": 1, "moved": 1, "regrouped": 0, "replaced": 0, "retired": 1}
    sync = store.read_attrs(path)["last_sync"]
    assert sync["relabelled"]["ids"] == ["a -> a -> z"] and sync["retired"]["ids"] == ["b"]
    assert "1 relabelled, 1 moved, 1 retired" in store.summary(path)
    assert_frames_right(path)


def test_same_file_under_two_ids_is_stored_for_both(tmp_path):
    path = tmp_path / "s.h5"
    rows = rows_of(["a", "b"]) + [store.VideoRow("a-again", "key-a", "/v/a.mp4", "other", "test", "", 2)]
    with store.shard_run(path) as folder:
        write(folder, rows[:2])
    assert store.merge_shards(path, ATTRS, rows).stored == 3
    videos = store.read_videos(path).set_index("video_id")
    assert videos.loc["a-again", "offset"] == videos.loc["a", "offset"] and videos.loc["a-again", "label"] == "other"


def test_missing_rows_become_failures(tmp_path):
    path = tmp_path / "s.h5"
    gone = {"video_id": "x", "key": "/v/x.mp4|missing", "path": "/v/x.mp4", "label": "a", "split": "", "group": ""}
    with store.shard_run(path) as folder:
        write(folder, rows_of(["a"]))
    report = store.merge_shards(path, ATTRS, rows_of(["a"]), [gone])
    failures = store.read_failures(path)
    assert (report.stored, report.failed) == (1, 1) and list(failures["stage"]) == ["missing"]
    assert "--skip-missing" in failures["message"][0]


def test_garbage_is_compacted_past_its_share_and_on_demand(tmp_path):
    path = tmp_path / "s.h5"
    names = [f"v{i}" for i in range(6)]
    add(path, rows_of(names))
    store.merge_shards(path, ATTRS, rows_of(names[:4]))  # 2 of 6 retired: 33% garbage, kept
    with h5py.File(path, "r") as f:
        assert f["features"].shape[0] == 6 * FRAMES
    assert "6 unreferenced" in store.summary(path)
    report = store.merge_shards(path, ATTRS, rows_of(names[:2]))  # 4 of 6: past GARBAGE_SHARE
    assert report.compacted
    with h5py.File(path, "r") as f:
        assert f["features"].shape[0] == 2 * FRAMES
    assert len(list(store.segments_dir(path).iterdir())) == 1
    assert_frames_right(path)

    add(path, rows_of(names[:2] + ["w"]))
    store.merge_shards(path, ATTRS, rows_of(["v0", "w"]))  # 1 of 3 retired: below the share
    result = store.compact(path)
    assert (result["frames_before"], result["frames_after"], result["segments_before"]) == (3 * FRAMES, 2 * FRAMES, 2)
    assert list(stored_features(path)) == ["v0", "w"] and len(list(store.segments_dir(path).iterdir())) == 1
    assert_frames_right(path)


def test_a_live_runs_half_written_shard_survives_a_merge_a_dead_ones_does_not(tmp_path):
    path = tmp_path / "s.h5"
    dead = store.parts_dir(path) / "run-dead"
    dead.mkdir(parents=True)
    (dead / "shard-x.h5.tmp").write_bytes(b"half a file of a killed run")
    with store.shard_run(path) as live:
        writing = live / "shard-y.h5.tmp"
        writing.write_bytes(b"being written right now")
        add(path, rows_of(["a"]))  # another run merges meanwhile
        assert writing.exists()
        assert not dead.exists()
    assert len(store.read_videos(path)) == 1


def test_concurrent_merges_wait_for_each_other_and_keep_every_video(tmp_path, caplog):
    path = tmp_path / "s.h5"
    names = [f"v{i}" for i in range(8)]
    with store.shard_run(path) as folder:
        write(folder, rows_of(names[:4]))
    with store.shard_run(path) as other:
        write(other, rows_of(names)[4:])
        monkey_notice = store.LOCK_NOTICE_S
        store.LOCK_NOTICE_S = 0.2
        try:
            with store.store_lock(path, 5):  # a merge in progress
                waiting = threading.Thread(target=store.merge_shards, args=(path, ATTRS, rows_of(names)))
                with caplog.at_level(logging.INFO, logger="pipeline.store"):
                    waiting.start()
                    time.sleep(1.0)
                    assert waiting.is_alive()
                with pytest.raises(store.StoreError, match="lock-timeout"):
                    store.merge_shards(path, ATTRS, rows_of(names), lock_timeout=0.3)
            waiting.join(10)
        finally:
            store.LOCK_NOTICE_S = monkey_notice
    assert "waiting for another run's merge" in caplog.text
    assert list(store.read_videos(path)["video_id"]) == names
    assert_frames_right(path)


def test_another_manifests_or_configs_store_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a"]))
    with pytest.raises(store.StoreError, match="belongs to the manifest /data/m.csv, not to /other/m.csv"):
        store.merge_shards(path, {**ATTRS, "manifest": "/other/m.csv"}, rows_of(["a"]))
    with pytest.raises(store.StoreError, match="another config"):
        store.check_owner(path, {**ATTRS, "config_hash": "c2"})


STEPS = ("segment_written", "compacted", "index_written", "index_swapped")


def killed_merge(path, rows, step):
    store.merge_shards(path, ATTRS, rows, on_step=lambda name: name == step and os.kill(os.getpid(), signal.SIGKILL))


@pytest.mark.parametrize("step,compacting", [(step, True) for step in STEPS] + [(step, False) for step in STEPS if step != "compacted"])
def test_kill_9_during_a_merge_then_rerun_equals_an_unbroken_merge(tmp_path, step, compacting):
    names = [f"v{i}" for i in range(6)]
    changed = store.VideoRow("v0", "key-v0-new", "/v/v0.mp4", "a", "train", "", 0)  # v0's file changed

    def scenario(path, kill):
        add(path, rows_of(names))
        with store.shard_run(path) as folder:  # compacting: two shards copied into one segment, v1..v4 retired
            write(folder, [changed, *rows_of(["w"])], shards=2 if compacting else 1)  # else one shard, linked
        rows = [changed, *rows_of(["v5", "w"] if compacting else names[1:] + ["w"])]
        if kill:
            child = multiprocessing.get_context("fork").Process(target=killed_merge, args=(path, rows, step))
            child.start()
            child.join()
            assert child.exitcode == -signal.SIGKILL
        store.merge_shards(path, ATTRS, rows)

    scenario(tmp_path / "killed" / "s.h5", kill=True)
    scenario(tmp_path / "unbroken" / "s.h5", kill=False)
    a, b = tmp_path / "killed" / "s.h5", tmp_path / "unbroken" / "s.h5"
    pd.testing.assert_frame_equal(store.read_videos(a), store.read_videos(b))
    for (name, x), (_, y) in zip(stored_features(a).items(), stored_features(b).items()):
        np.testing.assert_array_equal(x, y)
    assert sorted(os.listdir(a.parent)) == sorted(os.listdir(b.parent))  # no leftovers
    assert len(os.listdir(store.segments_dir(a))) == len(os.listdir(store.segments_dir(b))) == (1 if compacting else 2)


def test_truncated_index_is_named_and_recovered_from_segments(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a", "b"]))
    add(path, rows_of(["a", "b", "c"]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(store.StoreError, match=f"{path} cannot be read.*compact {path} --recover"):
        store.read_videos(path)
    result = store.recover(path)
    assert (result["videos"], result["segments"], result["lost_segments"]) == (3, 2, [])
    assert sorted(store.read_videos(path)["video_id"]) == ["a", "b", "c"]
    assert_frames_right(path)
    with pytest.raises(store.StoreError, match="recovered and not synced"):
        store.require_in_sync(path)
    store.merge_shards(path, ATTRS, rows_of(["a", "b", "c"]))
    store.require_in_sync(path)  # no manifest file on disk: a warning only


def test_manifest_changed_since_sync_is_refused_by_stage_two(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.mp4,a\n")
    path = tmp_path / "s.h5"
    attrs = {**ATTRS, "manifest": str(manifest), "manifest_sha256": store.file_sha256(manifest), "weights_path": ""}
    with store.shard_run(path) as folder:
        write(folder, rows_of(["a"]))
    store.merge_shards(path, attrs, rows_of(["a"]))
    store.require_in_sync(path)
    manifest.write_text("path,label\na.mp4,b\n")
    with pytest.raises(store.StoreError, match=f"manifest {manifest} changed.*python -m pipeline features --manifest {manifest} --store {path}"):
        store.require_in_sync(path)
    segment = next(store.segments_dir(path).iterdir())
    manifest.write_text("path,label\na.mp4,a\n")
    segment.rename(tmp_path / "elsewhere.h5")
    with pytest.raises(store.StoreError, match="lacks 1 segment file"):
        store.require_in_sync(path)


def test_version_1_store_is_refused_then_migrated_by_compact(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # the layout of schema version 1, as users have it
        f.attrs["schema_version"] = 1
        f.attrs["feature_config"] = json.dumps({"backbone": "test"})
        f.attrs["config_hash"] = "c1"
        f.create_dataset("features", data=np.concatenate([features_of("a"), features_of("b")]).astype(np.float16), maxshape=(None, DIM))
        f.create_dataset("frame_index", data=np.arange(2 * FRAMES), maxshape=(None,))
        f.create_dataset("timestamps", data=np.zeros(2 * FRAMES), maxshape=(None,))
        table = pd.DataFrame([{**vars(r), "total_frames": 30, "width": 64, "height": 48, "offset": i * FRAMES, "length": FRAMES, "fps": 10.0}
                              for i, r in enumerate(rows_of(["a", "b"]))]).drop(columns="order")
        store._write_table(f, "videos", table)
        store._write_table(f, "failures", pd.DataFrame(columns=store.FAILURE_COLUMNS))
    inode = path.stat().st_ino
    with pytest.raises(store.StoreError, match=f"version 1.*python -m pipeline compact {path}"):
        store.read_videos(path)
    store.compact(path)
    assert list(store.read_videos(path)["video_id"]) == ["a", "b"]
    assert_frames_right(path)
    assert store.read_attrs(path)["schema_version"] == store.SCHEMA_VERSION
    assert inode not in {p.stat().st_ino for p in store.segments_dir(path).iterdir()}  # compacted after migration
