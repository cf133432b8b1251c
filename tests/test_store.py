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
from pipeline.core.hashing import file_sha256
from pipeline.store.tables import write_table

DIM, FRAMES = 8, 3
ATTRS = {
    "feature_config": {"backbone": "test"},
    "config_hash": "c1",
    "manifest": "/data/m.csv",
    "manifest_sha256": "h1",
}


def rows_of(names, labels=None, splits=None):
    return [
        store.VideoRow(
            name,
            f"key-{name}",
            f"/v/{name}.mp4",
            (labels or {}).get(name, "a"),
            (splits or {}).get(name, "train"),
            "",
            order,
        )
        for order, name in enumerate(names)
    ]


def features_of(name: str) -> np.ndarray:
    """Frames whose values say which video they belong to."""
    seed = sum(map(ord, name))
    return (np.arange(FRAMES * DIM).reshape(FRAMES, DIM) % 7 + seed % 50).astype(np.float32)


def add(path, rows, fail=(), shards=1):
    """One run on manifest `rows`: write the rows not stored yet into `shards` shard files (failing those in `fail`),
    merge."""
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
                shard.add_video(
                    row, features_of(row.video_id), np.arange(FRAMES), np.arange(FRAMES) / 10, 30, 10.0, 64, 48
                )
        store.write_shard(folder, shard, DIM, "float16")


def stored_features(path) -> dict:
    """video_id -> its frames, read with plain h5py as the README shows."""
    videos = store.read_videos(path)
    with h5py.File(path, "r") as f:
        return {
            v.video_id: f["features"][v.offset : v.offset + v.length].astype(np.float32) for v in videos.itertuples()
        }


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


def test_merges_that_only_append_extend_the_index_and_equal_a_full_rebuild(tmp_path, monkeypatch):
    """A grown manifest is synced by appending to the index; every step must leave what a full rebuild leaves."""

    def dup(video_id, of, order):  # a row naming the file of another one
        return store.VideoRow(video_id, f"key-{of}", f"/v/{of}.mp4", "a", "test", "", order)

    gone = {"video_id": "x", "key": "/v/x.mp4|missing", "path": "/v/x.mp4", "label": "a", "split": "", "group": ""}
    names = ["a", "b", "c"]
    runs = [  # (manifest rows, rows failing, --skip-missing rows, whether the merge may append)
        (rows_of(names), {"b"}, [], False),  # a new store
        (rows_of(names + ["d", "e"]), {"e"}, [gone], True),  # appended rows; a failure among the earlier ones
        (
            rows_of(names + ["d", "e", "f", "g"]) + [dup("g2", "g", 7), dup("f2", "f", 8)],
            set(),
            [gone],
            True,
        ),  # one file under two new ids
        (
            rows_of(names + ["d", "e", "f", "g"]) + [dup("g2", "g", 7), dup("f2", "f", 8)],
            set(),
            [],
            True,
        ),  # a no-op, but x came back
        (
            rows_of(names + ["d", "e", "f", "g"]) + [dup("g2", "g", 7), dup("f2", "f", 8), dup("a2", "a", 9)],
            set(),
            [],
            False,
        ),  # an earlier file
        (rows_of(names + ["d", "e", "f", "g", "h"], labels={"c": "z"}), set(), [], False),  # relabelled, retired
        (rows_of(names + ["d", "e", "f", "g", "h", "i"], labels={"c": "z"}), set(), [], True),
    ]
    appended = []
    real_append, real_grown = store.sync.append_index, store.sync._grown_from
    monkeypatch.setattr(
        store.sync, "append_index", lambda *args, **kw: appended.append(args[0].parent.name) or real_append(*args, **kw)
    )
    fast, full = tmp_path / "fast" / "s.h5", tmp_path / "full" / "s.h5"
    for rows, fail, missing, may_append in runs:
        for path in (fast, full):
            if path == full:  # the reference: never append
                monkeypatch.setattr(store.sync, "_grown_from", lambda *args: (None, real_grown(*args)[1]))
            path.parent.mkdir(exist_ok=True)
            known = set().union(*store.stored_keys(path)) if path.exists() else set()  # as `features` skips them
            with store.shard_run(path) as folder:
                write(
                    folder,
                    [row for row in rows if row.key not in known and row.video_id not in ("g2", "f2", "a2")],
                    fail,
                )
            store.merge_shards(path, ATTRS, rows, missing)
            monkeypatch.setattr(store.sync, "_grown_from", real_grown)
        assert appended.count("fast") == sum(
            run[3] for run in runs[: runs.index((rows, fail, missing, may_append)) + 1]
        )
        pd.testing.assert_frame_equal(store.read_videos(fast), store.read_videos(full))
        pd.testing.assert_frame_equal(store.read_failures(fast), store.read_failures(full))
        fast_attrs, full_attrs = store.read_attrs(fast), store.read_attrs(full)
        assert fast_attrs["synced_digest"] == full_attrs["synced_digest"] and fast_attrs["synced_rows"] == len(rows)
        assert {k: v["count"] for k, v in fast_attrs["last_sync"].items() if k != "time"} == {
            k: v["count"] for k, v in full_attrs["last_sync"].items() if k != "time"
        }
        assert_frames_right(fast)
    assert "full" not in appended
    assert list(store.read_videos(fast)["video_id"]) == ["a", "c", "d", "f", "g", "h", "i"]


def test_manifest_is_the_truth_for_metadata(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a", "b", "c", "d"]), fail=("d",))
    segments = sorted(p.name for p in store.segments_dir(path).iterdir())
    edited = rows_of(
        ["c", "a"], labels={"a": "z"}, splits={"c": "test"}
    )  # b and d retired, a relabelled, c moved, reordered
    report = store.merge_shards(path, ATTRS, edited)
    assert sorted(p.name for p in store.segments_dir(path).iterdir()) == segments  # nothing re-extracted or copied
    videos = store.read_videos(path)
    assert (
        list(videos["video_id"]) == ["c", "a"]
        and list(videos["label"]) == ["a", "z"]
        and list(videos["split"]) == ["test", "train"]
    )
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


def test_garbage_is_compacted_past_its_share_and_on_demand(tmp_path, monkeypatch):
    monkeypatch.setattr(store.grace, "KEEP_S", 0.0)  # retired videos' frames are garbage at once (their grace is over)
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
        monkey_notice = store.locks.LOCK_NOTICE_S
        store.locks.LOCK_NOTICE_S = 0.2
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
            store.locks.LOCK_NOTICE_S = monkey_notice
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


@pytest.mark.parametrize(
    "step,mode",
    [(step, "compacting") for step in STEPS]
    + [(step, mode) for step in STEPS if step != "compacted" for mode in ("linking", "appending")],
)
def test_kill_9_during_a_merge_then_rerun_equals_an_unbroken_merge(tmp_path, monkeypatch, step, mode):
    if mode == "compacting":  # the retired videos' grace period over: their frames are garbage, and compacted
        monkeypatch.setattr(store.grace, "KEEP_S", 0.0)
    names = [f"v{i}" for i in range(6)]
    changed = store.VideoRow("v0", "key-v0-new", "/v/v0.mp4", "a", "train", "", 0)  # v0's file changed

    def scenario(path, kill):
        add(path, rows_of(names))
        with store.shard_run(path) as folder:  # compacting: two shards copied into one segment, v1..v4 retired
            added = rows_of(names + ["w"])[-1:]  # appending: only w, at the end of the manifest (the index is extended)
            write(folder, added if mode == "appending" else [changed, *added], shards=2 if mode == "compacting" else 1)
        rows = {
            "compacting": [changed, *rows_of(["v5", "w"])],
            "linking": [changed, *rows_of(names[1:] + ["w"])],
            "appending": rows_of(names + ["w"]),
        }[mode]
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
    assert len(store.read_videos(a)) == {"compacting": 3, "linking": 7, "appending": 7}[mode]
    for (name, x), (_, y) in zip(stored_features(a).items(), stored_features(b).items()):
        np.testing.assert_array_equal(x, y)
    assert sorted(os.listdir(a.parent)) == sorted(os.listdir(b.parent))  # no leftovers
    assert (
        len(os.listdir(store.segments_dir(a)))
        == len(os.listdir(store.segments_dir(b)))
        == (1 if mode == "compacting" else 2)
    )


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
    attrs = {**ATTRS, "manifest": str(manifest), "manifest_sha256": file_sha256(manifest), "weights_path": ""}
    with store.shard_run(path) as folder:
        write(folder, rows_of(["a"]))
    store.merge_shards(path, attrs, rows_of(["a"]))
    store.require_in_sync(path)
    manifest.write_text("path,label\na.mp4,b\n")
    with pytest.raises(
        store.StoreError,
        match=f"manifest {manifest} changed.*python -m pipeline features --manifest {manifest} --store {path}",
    ):
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
        f.create_dataset(
            "features",
            data=np.concatenate([features_of("a"), features_of("b")]).astype(np.float16),
            maxshape=(None, DIM),
        )
        f.create_dataset("frame_index", data=np.arange(2 * FRAMES), maxshape=(None,))
        f.create_dataset("timestamps", data=np.zeros(2 * FRAMES), maxshape=(None,))
        table = pd.DataFrame(
            [
                {
                    **vars(r),
                    "total_frames": 30,
                    "width": 64,
                    "height": 48,
                    "offset": i * FRAMES,
                    "length": FRAMES,
                    "fps": 10.0,
                }
                for i, r in enumerate(rows_of(["a", "b"]))
            ]
        ).drop(columns="order")
        write_table(f, "videos", table)
        write_table(f, "failures", pd.DataFrame(columns=store.FAILURE_COLUMNS))
    inode = path.stat().st_ino
    with pytest.raises(store.StoreError, match=f"version 1.*python -m pipeline compact {path}"):
        store.read_videos(path)
    store.compact(path)
    assert list(store.read_videos(path)["video_id"]) == ["a", "b"]
    assert_frames_right(path)
    assert store.read_attrs(path)["schema_version"] == store.SCHEMA_VERSION
    assert inode not in {p.stat().st_ino for p in store.segments_dir(path).iterdir()}  # compacted after migration


def test_a_merge_from_an_older_manifest_keeps_a_live_runs_shards_of_rows_it_does_not_know(tmp_path):
    path = tmp_path / "s.h5"
    v1, v2 = rows_of(["a", "b"]), rows_of(["a", "b", "c", "d"])
    with store.shard_run(path) as run_b:  # B extracts v2
        for part in ([v2[0]], v2[1:3], [v2[3]]):
            write(run_b, part)
        store.merge_shards(path, ATTRS, v1)  # meanwhile A, on the reverted manifest v1, merges
        assert list(store.read_videos(path)["video_id"]) == ["a", "b"]
        assert_frames_right(path)
        assert len(list(run_b.glob("*.h5"))) == 2  # (b, c) and (d): not A's to drop; b copied from the first
        report = store.merge_shards(path, ATTRS, v2, own_run=run_b)
    assert (report.stored, report.failed) == (4, 0)
    assert list(store.read_videos(path)["video_id"]) == ["a", "b", "c", "d"]
    assert_frames_right(path)
    assert not store.parts_dir(path).exists()


def test_a_run_ended_by_an_exception_leaves_no_lock_and_orphan_locks_are_collected(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt):
        with store.shard_run(path):
            raise KeyboardInterrupt
    assert not store.parts_dir(path).exists()
    store.parts_dir(path).mkdir()
    (store.parts_dir(path) / "run-gone.lock").write_text("")  # a run killed between unlinking its folder and its lock
    add(path, rows_of(["a"]))
    assert not store.parts_dir(path).exists()


def test_a_missing_segment_is_named_by_the_checks_and_by_recover(tmp_path):
    path = tmp_path / "s.h5"
    add(path, rows_of(["a"]))
    add(path, rows_of(["a", "b"]))
    gone = store.segments_dir(path) / _index_segments(path)[1]
    gone.unlink()  # e.g. the store copied with part of its folder
    with pytest.raises(store.StoreError, match=f"lacks 1 segment file.*{gone.name}.*--recover"):
        store.require_segments(path)
    assert f"MISSING segment file {gone}" in store.summary(path)
    result = store.recover(path)
    assert [lost for lost in result["lost_segments"] if gone.name in lost and "gone" in lost]
    assert list(store.read_videos(path)["video_id"]) == ["a"]
    store.require_segments(path)


def _index_segments(path):
    with h5py.File(path, "r") as f:
        return list(f["segments"]["name"].asstr()[:])


def test_a_one_video_segment_takes_the_bytes_of_its_rows_not_of_a_full_chunk(tmp_path):
    path = tmp_path / "s.h5"
    dim = 1280
    with store.shard_run(path) as folder:
        shard = store.Shard()
        shard.add_video(
            rows_of(["a"])[0], np.ones((16, dim), np.float32), np.arange(16), np.arange(16) / 10, 30, 10.0, 64, 48
        )
        written = store.write_shard(folder, shard, dim, "float16")
        with h5py.File(written, "r") as f:
            assert f["features"].chunks[0] == 16
        assert written.stat().st_size < 16 * dim * 2 + 64 * 1024  # the frames plus HDF5's own few KB
    store.merge_shards(path, ATTRS, rows_of(["a"]))


def test_a_file_the_tool_did_not_make_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("my notes, not a store\n")
    for action in (
        lambda: store.check_owner(path, ATTRS),
        lambda: store.read_videos(path),
        lambda: store.compact(path),
        lambda: store.recover(path),
        lambda: store.merge_shards(path, ATTRS, rows_of(["a"])),
    ):
        with pytest.raises(
            store.StoreError, match="is not a feature store.*point --store at a path of its own"
        ) as refused:
            action()
        assert "delete" not in str(refused.value) and "corrupt" not in str(refused.value)
    assert path.read_text() == "my notes, not a store\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.h5"]  # no .lock, no folders
