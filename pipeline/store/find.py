"""Which store a person means: the store file, the folder that holds it, or the manifest it was made from.

`features` writes `<stores root>/<manifest name>/<readable name>-<hash>.h5` (see
`FeatureConfig.store_name`), so a person types the folder or the manifest more easily than the
file. A store records its manifest's resolved path (`attrs["manifest"]`), which tells the stores
of `projA/train.csv` and `projB/train.csv` apart although both live in `features/train/`. Only the
store's own attributes are read here, so stage two finds its input without stage one's code; a
store of an earlier version's name (hashes only) is found the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.store.index import read_attrs, schema_version
from pipeline.store.layout import STORES_DIR, StoreError, parts_dir, segments_dir


def find_store(path: str | Path, stores_root: str | Path = STORES_DIR) -> Path:
    """The store `path` names: an .h5 file itself; a folder holding exactly one store; a manifest CSV with one store.

    A folder or manifest with none, or with several, is refused naming what it holds and what to
    pass instead. Any other path comes back as it is, for the reader to open (or to name as missing).
    """
    path = Path(path)
    if path.is_dir():
        candidates, where = stores_in(path), f"folder {path}"
        none = "pass a store file (.h5), or make one with `video-pipeline features --manifest MANIFEST`"
    elif path.suffix.lower() == ".csv":
        if not path.is_file():
            raise StoreError(f"no manifest at {path}: pass a store (.h5), its folder, or an existing manifest CSV")
        folder = Path(stores_root) / path.stem
        candidates, where = stores_of_manifest(path, stores_root), f"manifest {path} (looked in {folder})"
        others = [p.name for p in stores_in(folder) if p not in candidates] if folder.is_dir() else []
        none = f"make one with `video-pipeline features --manifest {path}` (or `make features MANIFEST={path}`)"
        if others:
            none += f"; the stores in {folder} belong to other manifests: {', '.join(others)}"
    else:
        return path
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise StoreError(f"no feature store for {where}: {none}")
    listed = "; ".join(f"{candidate} ({describe(candidate)})" for candidate in candidates)
    raise StoreError(f"{where} has {len(candidates)} feature stores: {listed}. Pass the one you mean as the .h5 file")


def stores_in(folder: str | Path) -> list[Path]:
    """The store index files in `folder`: .h5 files with store attributes or a segment folder beside them.

    An index that cannot be read but has its segments is a store (using it names what is wrong);
    other HDF5 files (a weights file, say) are not. Segment and part files live in subfolders.
    """
    return [
        candidate
        for candidate in sorted(Path(folder).glob("*.h5"))
        if not candidate.name.startswith(".")  # temporary files of a write in progress
        and candidate.is_file()
        and (segments_dir(candidate).is_dir() or schema_version(candidate) > 0)
    ]


def stores_of_manifest(manifest: str | Path, stores_root: str | Path = STORES_DIR) -> list[Path]:
    """The stores under `<stores_root>/<manifest name>/` that record `manifest` (its resolved path) as theirs."""
    source = str(Path(manifest).resolve())
    folder = Path(stores_root) / Path(manifest).stem
    return [store for store in (stores_in(folder) if folder.is_dir() else []) if _manifest_of(store) == source]


def remove_stores(manifest: str | Path, stores_root: str | Path = STORES_DIR) -> list[Path]:
    """Delete the stores of `manifest` (`stores_of_manifest`) with all their files; their folder when left empty.

    A store's files are its index, `<index>.segments/`, `.parts/`, `.lock`, `.broken` and
    `<store>.failures.csv`. Stores of other manifests in the same folder (another `demo.csv`) stay.
    Returns the index paths removed.
    """
    removed = stores_of_manifest(manifest, stores_root)
    for index in removed:
        beside = [Path(f"{index}.{suffix}") for suffix in ("lock", "broken")] + [index.with_suffix(".failures.csv")]
        for path in [index, segments_dir(index), parts_dir(index), *beside]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    folder = Path(stores_root) / Path(manifest).stem
    if removed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return removed


def describe(store_path: Path) -> str:
    """A store's feature config in a few words, to tell candidates apart; or why it cannot be read."""
    try:
        config = read_attrs(store_path)["feature_config"]
    except (OSError, StoreError, KeyError) as error:
        return f"unreadable: {error}"
    return ", ".join(
        str(config.get(name)) for name in ("backbone", "weights", "image_size", "sampling", "pooling") if name in config
    )


def _manifest_of(store_path: Path) -> str | None:
    try:
        return read_attrs(store_path).get("manifest")
    except (OSError, StoreError):
        return None
