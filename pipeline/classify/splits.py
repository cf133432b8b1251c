"""Which split each video of a store belongs to: the manifest's, or drawn group-aware with a fixed seed.

Splits come from the manifest's `split` column; where it is empty, a stratified, group-aware split
with a fixed seed is drawn (clips of one `group` never straddle two splits, and neither does one
file under several ids or byte-identical copies of it: see `group_ids`), and a validation split is
carved from train the same way when the manifest names none.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def assign_splits(videos: pd.DataFrame, seed: int = 0, test_size: float = 0.15, val_size: float = 0.15) -> pd.Series:
    """Each video's split (train / val / test), indexed like `videos`.

    The manifest's `split` column wins when every video has one; when none has, `test_size` of the
    videos are held out for test, group-aware and stratified by label; either way, when no video is
    in `val`, `val_size` of the training videos are carved out the same way. A mix of rows with and
    without a split is refused, since there is no way to tell what the empty ones meant.
    """
    given = videos["split"].fillna("").astype(str).str.strip().str.lower()
    unknown = sorted(set(given) - {"", *SPLITS})
    if unknown:
        raise InputError(f"unknown split names in the store: {', '.join(unknown)} (expected {', '.join(SPLITS)})")
    groups = group_ids(videos)
    if (given == "").all():
        split = pd.Series("train", index=videos.index)
        split[_holdout(videos.index, videos["label"], groups, test_size, seed)] = "test"
    elif (given == "").any():
        raise InputError(
            f"{(given == '').sum()} of {len(given)} videos have no split while the others do; "
            f"give every manifest row a split (train/val/test) or none"
        )
    else:
        split = given.copy()
        _warn_straddling(split, groups)
    if not (split == "val").any():
        train = split.index[split == "train"]
        split[_holdout(train, videos.loc[train, "label"], groups[train], val_size, seed)] = "val"
    return split


def group_ids(videos: pd.DataFrame) -> pd.Series:
    """A video's group: its manifest `group` (or the video itself when it has none), joined with every group that
    holds the same file (`key`: one file under several ids) or the same bytes (`content`, recorded by stage one:
    a copy under another path).

    Joined transitively (connected components), so identical content never straddles two splits;
    a group is named by its first video's group. A store written before `content` existed groups
    by file only.
    """
    group = videos["group"].fillna("").astype(str)
    own = group.where(group != "", "video:" + videos["video_id"].astype(str)).to_numpy(object)
    links = [own]
    if "key" in videos:
        links.append(videos["key"].astype(str).to_numpy(object))
    if "content" in videos:
        content = videos["content"].fillna("").astype(str).to_numpy(object)
        links.append(np.where(content != "", content, own))  # no content recorded: no link
    return pd.Series(own[_first_connected(links)], index=videos.index)


# --- helpers ---------------------------------------------------------------------------------


def _first_connected(links: list[np.ndarray]) -> np.ndarray:
    """Per row, the first row connected to it: two rows are connected when they share a value of one of `links`
    (one array of labels per kind, each as long as the table), directly or through other rows."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = len(links[0])
    codes, labels = pd.factorize(
        np.concatenate([f"{kind}\0" + np.asarray(link, str) for kind, link in enumerate(links)])
    )
    nodes = codes.reshape(len(links), rows)  # one node per (kind, label): kinds never mix
    edges = coo_matrix(
        (np.ones(rows * (len(links) - 1)), (np.tile(nodes[0], len(links) - 1), nodes[1:].ravel())),
        shape=(len(labels), len(labels)),
    )
    _, component = connected_components(edges, directed=False)
    return pd.Series(np.arange(rows)).groupby(component[nodes[0]]).transform("min").to_numpy()


def _holdout(index: pd.Index, labels: pd.Series, groups: pd.Series, fraction: float, seed: int) -> pd.Index:
    """About `fraction` of `index`, whole groups only, stratified by label (one StratifiedGroupKFold fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if fraction <= 0:
        return index[:0]
    # sklearn needs at least as many groups, and as many videos in the largest class, as folds
    folds = min(round(1 / fraction), groups.nunique(), labels.value_counts().max())
    if folds < 2:
        log.warning("too few videos or groups (%d) to hold out a split; nothing is held out", groups.nunique())
        return index[:0]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only N members": handled and reported downstream
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(np.zeros(len(index)), labels.to_numpy(), groups.to_numpy()))
    return index[held]


def _warn_straddling(split: pd.Series, groups: pd.Series) -> None:
    spread = split.groupby(groups).nunique()
    if (spread > 1).any():
        log.warning(
            "the manifest's splits put %d group(s) in more than one split (e.g. %s; a group holds the clips of "
            "one source, and every row of one file or of copies of its bytes): in train and test, they inflate "
            "test accuracy",
            (spread > 1).sum(),
            spread[spread > 1].index[0],
        )
