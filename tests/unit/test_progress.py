"""What a person reading a log (an Airflow task's, CI's) sees of a long step: plain lines, never bars."""

import time

from shoploop.pipeline import progress


def test_off_a_terminal_progress_is_plain_lines_with_the_time_left(capsys, monkeypatch):
    monkeypatch.delenv("SHOPLOOP_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.05)
    shown = progress.bar(total=6, desc="fine-tuning the encoder", unit="step")
    for _ in range(6):
        time.sleep(0.03)
        shown.update(1)
        shown.set_postfix(loss="0.5", refresh=False)
    shown.close()
    for _ in progress.bar(range(3), desc="evaluating search", unit="query"):
        time.sleep(0.06)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and "\x1b" not in err
    assert lines[0] == "  fine-tuning the encoder: 6 steps to go"
    assert any("/6 steps (" in line and " left, " in line and "loss=0.5" in line for line in lines[1:])
    assert "  evaluating search: 3 queries to go" in lines
    assert any(line.startswith("  evaluating search: ") and "queries/s" in line for line in lines)


def test_progress_can_be_switched_off(capsys, monkeypatch):
    monkeypatch.setenv("SHOPLOOP_PROGRESS", "0")
    for _ in progress.bar(range(3), desc="encoding", unit="batch"):
        pass
    assert capsys.readouterr().err == ""
