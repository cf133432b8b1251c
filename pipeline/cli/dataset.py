"""Dataset commands: `manifest` (write a manifest from a dataset layout, or check one) and `demo-data`."""

from __future__ import annotations

import logging

from pipeline.cli.common import EXIT_OK, add_number, defaults_of

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_manifest(commands)
    _add_demo_data(commands)


def _add_manifest(commands) -> None:
    from pipeline.dataset.importers import from_ucf101
    from pipeline.dataset.manifest import SPLITS

    p = commands.add_parser("manifest", help="write a manifest CSV from a dataset layout, or check one")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="LAYOUT")
    folders = kinds.add_parser("folders", help="a folder per class: ROOT/<label>/<video>")
    folders.add_argument("root")
    ucf = kinds.add_parser("ucf101", help="UCF101 split lists (classInd.txt, trainlist0N.txt, testlist0N.txt)")
    ucf.add_argument("--splits", required=True, help="folder with classInd.txt and the split lists")
    ucf.add_argument("--videos", required=True, help="folder holding <Class>/v_<Class>_gNN_cNN.avi")
    ucf.add_argument(
        "--split",
        type=int,
        default=defaults_of(from_ucf101)["split"],
        choices=(1, 2, 3),
        help="which of the three splits (default: %(default)s)",
    )
    lst = kinds.add_parser("list", help="mmaction2-style list: one 'path label' per line")
    lst.add_argument("list_file")
    lst.add_argument("--root", help="folder the paths are relative to (default: the list's folder)")
    lst.add_argument("--classes", help="file with one class name per line, if labels are indices")
    lst.add_argument("--split", default="", choices=("", *SPLITS), help="split to record for every row")
    kin = kinds.add_parser("kinetics", help="Kinetics annotation CSV (label,youtube_id,time_start,time_end,split)")
    kin.add_argument("csv")
    kin.add_argument("--root", required=True, help="folder holding the downloaded clips")
    for kind in (folders, ucf, lst, kin):
        kind.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    check = kinds.add_parser("check", help="validate a manifest and print its counts")
    check.add_argument("manifest")
    check.add_argument("--skip-missing", action="store_true", help="drop rows whose file is missing instead of failing")
    p.set_defaults(func=_cmd_manifest)


def _cmd_manifest(args) -> int:
    from pipeline.dataset import importers
    from pipeline.dataset import manifest as m

    if args.kind == "check":
        frame = m.read_manifest(args.manifest, skip_missing=args.skip_missing)
        print(frame.groupby(["label", "split"]).size().rename("videos").to_string())
        log.info("%s: %d videos, %d labels, valid", args.manifest, len(frame), frame["label"].nunique())
        return EXIT_OK
    frame = {
        "folders": lambda: importers.from_class_folders(args.root),
        "ucf101": lambda: importers.from_ucf101(args.splits, args.videos, args.split),
        "list": lambda: importers.from_path_label_list(args.list_file, args.root, args.classes, args.split),
        "kinetics": lambda: importers.from_kinetics_csv(args.csv, args.root),
    }[args.kind]()
    path = m.write_manifest(frame, args.output)
    log.info("wrote %s: %d videos, %d labels", path, len(frame), frame["label"].nunique())
    print(path)
    return EXIT_OK


def _add_demo_data(commands) -> None:
    from pipeline.core.config import SEED, Bound
    from pipeline.dataset.demo import write_demo_dataset

    defaults = defaults_of(write_demo_dataset)
    p = commands.add_parser(
        "demo-data", help="write the synthetic demo dataset (temporal-order classes) and its manifest"
    )
    p.add_argument("--output", default=defaults["folder"], help="folder for the clips (default: %(default)s)")
    p.add_argument("--manifest", default=defaults["manifest"], help="manifest to write (default: %(default)s)")
    add_number(
        p,
        "--per-class",
        Bound(1, 10_000, unit="clips"),
        default=defaults["per_class"],
        help="clips per class (default: %(default)s)",
    )
    add_number(
        p,
        "--seed",
        SEED,
        default=defaults["seed"],
        help="random seed; the same seed gives the same files (default: %(default)s)",
    )
    p.add_argument(
        "--remove-stores",
        action="store_true",
        help="instead: delete the feature stores made from --manifest (only those recording it, under "
        "features/<its name>/) and rewrite reports/index.html; `make clean` runs it",
    )
    p.set_defaults(func=_cmd_demo_data)


def _cmd_demo_data(args) -> int:
    from pipeline.dataset.demo import write_demo_dataset

    if args.remove_stores:
        return _remove_demo_stores(args.manifest)
    path = write_demo_dataset(args.output, args.manifest, per_class=args.per_class, seed=args.seed)
    print(path)
    return EXIT_OK


def _remove_demo_stores(manifest: str) -> int:
    """`demo-data --remove-stores`: the stores of `manifest` go, and the runs index forgets runs already deleted."""
    from pathlib import Path

    from pipeline.report.index import write_index
    from pipeline.store import remove_stores

    for index in remove_stores(manifest) if Path(manifest).is_file() else []:
        log.info("removed the store %s", index)
    if Path("reports/index.html").is_file():
        write_index("reports")
    return EXIT_OK
