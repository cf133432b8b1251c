"""Sequences from the feature store: fixed length, streamed vs in memory, splits, statistics."""

import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.classify.sequences import (
    SequenceConfig,
    SequenceSource,
    feature_stats,
    frame_positions,
    load_videos,
    make_dataset,
    sequence_config,
)
from pipeline.classify.splits import assign_splits

from helpers import FEATURE_CONFIG, merge, write_store


@pytest.fixture
def toy_store(tmp_path):
    labels = ["up", "down"] * 6
    return write_store(tmp_path / "toy.h5", labels, lengths=[3, 5, 8, 12, 4, 9, 6, 7, 10, 2, 8, 11])


def test_frame_positions_pad_thin_and_resample():
    pad = SequenceConfig(5, "pad")
    assert frame_positions(3, pad).tolist() == [0, 1, 2, -1, -1]
    assert frame_positions(5, pad).tolist() == [0, 1, 2, 3, 4]
    assert frame_positions(9, pad).tolist() == [0, 2, 4, 6, 8]  # thinned evenly, first and last kept
    resample = SequenceConfig(5, "resample")
    assert frame_positions(3, resample).tolist() == [0, 0, 1, 2, 2]  # repeats, never pads
    assert frame_positions(9, resample).tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="policy"):
        SequenceConfig(5, "crop")


def test_sequences_hold_the_stored_frames_and_mask_the_padding(toy_store):
    videos = load_videos(toy_store)
    source = SequenceSource(toy_store, videos, SequenceConfig(6, "pad"), in_memory=False)
    x, mask = source.read([0, 3])
    import h5py

    with h5py.File(toy_store) as handle:
        first = handle["features"][videos.offset[0] : videos.offset[0] + 3]
        long = handle["features"][videos.offset[3] : videos.offset[3] + 12]
    np.testing.assert_array_equal(x[0, :3], first)
    assert mask[0].tolist() == [True] * 3 + [False] * 3 and not x[0, 3:].any()
    np.testing.assert_array_equal(x[1], long[frame_positions(12, SequenceConfig(6))])
    assert mask[1].all()


@pytest.mark.parametrize("policy", ["pad", "resample"])
def test_streamed_and_in_memory_sequences_and_batches_are_identical(toy_store, policy):
    videos = load_videos(toy_store)
    config = SequenceConfig(6, policy)
    memory = SequenceSource(toy_store, videos, config, in_memory=True)
    streamed = SequenceSource(toy_store, videos, config, in_memory=False)
    rows = np.arange(len(videos))
    for a, b in zip(memory.read(rows), streamed.read(rows)):
        np.testing.assert_array_equal(a, b)
    labels = np.arange(len(videos)) % 2
    datasets = [make_dataset(source, rows, labels, batch_size=5, shuffle_seed=3) for source in (memory, streamed)]
    epochs = [[list(dataset.as_numpy_iterator()) for _ in range(2)] for dataset in datasets]
    order = [np.concatenate([batch[0]["frames"][:, 0, 0] for batch in epoch]) for epoch in epochs[0]]
    assert not np.array_equal(order[0], order[1]), "each epoch is shuffled anew"
    for epoch_memory, epoch_streamed in zip(*epochs):
        for (inputs_a, y_a), (inputs_b, y_b) in zip(epoch_memory, epoch_streamed, strict=True):
            np.testing.assert_array_equal(inputs_a["frames"], inputs_b["frames"])
            np.testing.assert_array_equal(inputs_a["mask"], inputs_b["mask"])
            np.testing.assert_array_equal(y_a, y_b)


def test_feature_stats_use_valid_frames_of_the_given_rows_only(toy_store):
    videos = load_videos(toy_store)
    source = SequenceSource(toy_store, videos, SequenceConfig(6), in_memory=False)
    train = np.array([0, 2, 5, 7])
    mean, std = feature_stats(source, train, batch_size=3)
    x, mask = source.read(train)
    np.testing.assert_allclose(mean, x[mask].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, x[mask].std(0), rtol=1e-4)


def test_constant_features_get_a_floor_on_their_deviation(tmp_path):
    path = write_store(tmp_path / "s.h5", ["a", "b"] * 3)
    videos = load_videos(path)
    source = SequenceSource(path, videos, SequenceConfig(4), in_memory=True)
    source._memory[0][..., 2] = 5.0  # one feature constant in training
    _, std = feature_stats(source, np.arange(len(videos)))
    assert std[2] > 0 and std[2] == pytest.approx(1e-3 * std.max())


def test_empty_store_one_class_and_too_long_sequences_are_refused(tmp_path):
    empty = tmp_path / "empty.h5"
    shard = store.Shard()
    row = store.VideoRow("bad", "k", "/bad.mp4", "x")
    shard.add_failure(row, "open", "DecodeError", "unreadable")
    merge(empty, shard, [row], 4, {"feature_config": FEATURE_CONFIG})
    with pytest.raises(ValueError, match="holds no videos.*failed videos: 1"):
        load_videos(empty)
    with pytest.raises(ValueError, match="only one class"):
        load_videos(write_store(tmp_path / "one.h5", ["a"] * 3))
    videos = load_videos(write_store(tmp_path / "ok.h5", ["a", "b"], lengths=[4, 7]))
    with pytest.raises(ValueError, match="longest video in the store \\(7 frames\\)"):
        sequence_config(videos, 8, "pad")
    assert sequence_config(videos, None, "pad").seq_len == 5  # the median length
    assert sequence_config(videos, 7, "resample") == SequenceConfig(7, "resample")


def _video_table(labels, groups, splits=None):
    return pd.DataFrame(
        {
            "video_id": [f"v{i}" for i in range(len(labels))],
            "label": labels,
            "group": groups,
            "split": splits if splits is not None else [""] * len(labels),
        }
    )


def test_generated_splits_are_stratified_group_aware_and_seeded():
    labels, groups = [], []
    for label in ("a", "b", "c"):
        for group in range(10):
            labels += [label] * 3
            groups += [f"{label}-g{group}"] * 3  # three clips cut from one source
    videos = _video_table(labels, groups)
    split = assign_splits(videos, seed=0)
    assert split.equals(assign_splits(videos, seed=0))
    assert not split.equals(assign_splits(videos, seed=1))
    assert (split.groupby(videos["group"]).nunique() == 1).all(), "a group straddles two splits"
    for name in ("train", "val", "test"):
        assert set(videos.loc[split == name, "label"]) == {"a", "b", "c"}
    assert 0.1 <= (split == "test").mean() <= 0.2


def test_manifest_splits_are_kept_and_validation_is_carved_from_train():
    labels = ["a", "b"] * 20
    groups = [f"g{i // 2}" for i in range(40)]
    given = ["test" if i >= 32 else "train" for i in range(40)]
    split = assign_splits(_video_table(labels, groups, given), seed=0)
    assert (split[32:] == "test").all()
    assert (split[:32] != "test").all() and (split[:32] == "val").sum() > 0
    assert (split.groupby(pd.Series(groups)).nunique() == 1).all()


def test_videos_without_a_group_are_their_own_group_and_bad_splits_are_refused():
    videos = _video_table(["a", "b"] * 10, [""] * 20)
    assert set(assign_splits(videos)) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="have no split while the others do"):
        assign_splits(_video_table(["a", "b"] * 2, [""] * 4, ["train", "", "test", "train"]))
    with pytest.raises(ValueError, match="unknown split names.*holdout"):
        assign_splits(_video_table(["a", "b"], ["", ""], ["train", "holdout"]))
