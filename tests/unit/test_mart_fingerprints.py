"""The engine-neutral mart checksum the scale profile's equivalence rests on: blind to what differs
between engines and is no difference (row order, column order, integer widths, an empty mart's
placeholder row), and changed by any real difference."""

import pyarrow as pa
import pyarrow.parquet as pq

from shoploop.warehouse import mart_fingerprints


def _write(folder, name, table):
    folder.mkdir(exist_ok=True)
    pq.write_table(table, folder / f"{name}.parquet")


def test_the_same_rows_in_any_order_and_width_give_the_same_fingerprint_and_a_changed_cell_does_not(tmp_path):
    rows = {"item_id": ["a", "b", "c"], "clicks": [1, 2, 3], "ctr": [0.1, 0.25, 1 / 3]}
    _write(tmp_path / "duckdb", "m", pa.table({"ctr": rows["ctr"], "item_id": rows["item_id"],
                                                "clicks": pa.array(rows["clicks"], pa.int64())}))
    _write(tmp_path / "spark", "m", pa.table({"item_id": rows["item_id"][::-1], "clicks": pa.array(rows["clicks"][::-1], pa.int32()),
                                               "ctr": rows["ctr"][::-1]}))
    _write(tmp_path / "changed", "m", pa.table({"item_id": rows["item_id"], "clicks": [1, 2, 4], "ctr": rows["ctr"]}))
    _write(tmp_path / "duplicated", "m", pa.table({"item_id": ["a", "a", "b", "c"], "clicks": [1, 1, 2, 3],
                                                    "ctr": [0.1, 0.1, 0.25, 1 / 3]}))
    prints = {name: mart_fingerprints(tmp_path / name)["m"] for name in ("duckdb", "spark", "changed", "duplicated")}
    assert prints["duckdb"] == prints["spark"] and prints["duckdb"][0] == 3
    assert prints["changed"][1] != prints["duckdb"][1]
    assert prints["duplicated"][0] == 4 and prints["duplicated"][1] != prints["duckdb"][1]


def test_an_empty_mart_and_dbt_duckdbs_all_null_placeholder_are_the_same(tmp_path):
    schema = pa.schema([("item_id", pa.string()), ("clicks", pa.int64())])
    _write(tmp_path / "duckdb", "m", pa.table({"item_id": [None], "clicks": [None]}, schema=schema))
    _write(tmp_path / "spark", "m", schema.empty_table())
    assert mart_fingerprints(tmp_path / "duckdb") == mart_fingerprints(tmp_path / "spark")
    assert mart_fingerprints(tmp_path / "spark")["m"][0] == 0
