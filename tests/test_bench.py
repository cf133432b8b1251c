"""`bench`: the store rows run through the real part (in its own process) and land in bench.json and the README table."""

import json

from pipeline import bench


def test_store_rows_of_a_store_only_bench_are_written_and_tabled(tmp_path):
    output = tmp_path / "bench.json"
    results = bench.run_all([], "", "", output, only=("store_*",), store_sizes="1000,2000")
    written = json.loads(output.read_text())
    assert written == results
    assert set(written) == {f"store_{kind}_{size}k_s" for kind in ("add10", "copy_merge") for size in (1, 2)} | {"store_noop_2k_s"}
    for row in written.values():
        assert row["seconds"] > 0 and len(row["runs"]) == bench.REPEATS and row["note"].startswith(f"median of {bench.REPEATS}")
    assert "2,000 videos" in written["store_add10_2k_s"]["note"]
    table = bench.table(written)
    assert "| store_add10_1k_s |" in table and "| store_noop_2k_s |" in table
