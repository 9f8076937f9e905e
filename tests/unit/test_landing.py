from datetime import date

import pandas as pd
import pytest

from shoploop.data import landing


def _judgments(n: int) -> pd.DataFrame:
    return pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "query_text": "pan",
                         "item_id": "i1", "grade": 3})


def test_contract_mismatch_is_an_error_naming_the_columns():
    with pytest.raises(ValueError, match="missing \\['grade'\\]"):
        landing.to_table("judgments", _judgments(1).drop(columns=["grade"]))


def test_writing_a_partition_twice_replaces_it(tmp_path):
    # given a partition / when written again for the same date / then it holds only the new rows
    landing.write_partition(tmp_path, "judgments", date(2026, 1, 1), _judgments(5))
    landing.write_partition(tmp_path, "judgments", date(2026, 1, 1), _judgments(3))
    assert len(landing.read_table(tmp_path, "judgments")) == 3


def test_appends_accumulate_and_leave_no_temporary_files(tmp_path):
    landing.write_partition(tmp_path, "judgments", date(2026, 1, 1), _judgments(2))
    landing.append(tmp_path, "judgments", date(2026, 1, 1), _judgments(4))
    assert len(landing.read_table(tmp_path, "judgments")) == 6
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_reading_an_empty_landing_zone_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="shoploop simulate"):
        landing.read_table(tmp_path, "events")


def test_a_reload_keeps_appended_events(tmp_path):
    # given live feedback appended to a day that is later bulk-loaded again
    landing.append(tmp_path, "judgments", date(2026, 1, 1), _judgments(2), prefix="feedback")
    landing.write_partition(tmp_path, "judgments", date(2026, 1, 1), _judgments(3))
    landing.write_partition(tmp_path, "judgments", date(2026, 1, 1), _judgments(3))
    # then the appended rows survive next to the reloaded ones
    assert len(landing.read_table(tmp_path, "judgments")) == 5
