"""Online evaluation: team-draft interleaving, click credit on fixed patterns, and what the registry does
with a verdict (the challenger promoted or rejected, with its reason in the history)."""

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from shoploop.models import registry
from shoploop.serving import interleaving
from shoploop.settings import Settings

A, B = "ranker:champion", "ranker:challenger"


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), unique=True, max_size=25), st.lists(st.integers(0, 30), unique=True, max_size=25),
       st.integers(1, 30), st.integers(0, 2**32))
def test_team_draft_is_fair_complete_and_keeps_each_models_order(first, second, k, seed):
    first, second = [f"i{n}" for n in first], [f"i{n}" for n in second]
    drafted = interleaving.team_draft(first, second, k, seed)
    items = [item for item, _ in drafted]
    assert len(items) == len(set(items)) == min(k, len(set(first) | set(second)))
    picks = [0, 0]
    for item, team in drafted:
        picks[team] += 1
        # a team places only its own items, and while both have items left neither leads by two
        assert item in (first, second)[team]
        assert abs(picks[0] - picks[1]) <= 1 or not (set(first) - set(items) and set(second) - set(items))
    for team, ranking in enumerate((first, second)):
        own = [item for item, t in drafted if t == team]
        assert own == sorted(own, key=ranking.index)
    assert drafted == interleaving.team_draft(first, second, k, seed)  # the pages of one search agree


def test_identical_rankings_interleave_into_that_ranking():
    ranking = [f"i{n}" for n in range(10)]
    assert [item for item, _ in interleaving.team_draft(ranking, ranking, 10, 3)] == ranking


def _list(session: int, placed: dict[str, str], clicked: list[str]) -> list[dict]:
    rows = [{"session_id": f"s{session}", "query_id": "q1", "item_id": item, "event_type": "impression",
             "surface": "search", "model_version": team} for item, team in placed.items()]
    return rows + [{**next(r for r in rows if r["item_id"] == item), "event_type": "click"} for item in clicked]


def test_clicks_are_credited_to_the_model_that_placed_the_item():
    placed = {"x": A, "y": B, "z": A, "w": B}
    events = []
    for n in range(40):  # shoppers click the challenger's items
        events += _list(n, placed, ["y"] if n % 4 else ["y", "w", "x"])
    for n in range(40, 46):  # ties: one click on each model's items
        events += _list(n, placed, ["x", "y"])
    events += _list(46, placed, [])  # shown, nothing clicked
    events += _list(47, {"x": A, "z": A}, ["x"])  # the champion's list alone: not interleaved
    events += _list(48, placed, ["y", "y"])  # a repeated click counts once (still a win)
    verdict = interleaving.verdict(pd.DataFrame(events), A, B)
    assert (verdict.lists, verdict.clicked_lists) == (48, 47)
    assert (verdict.challenger_wins, verdict.champion_wins, verdict.ties) == (41, 0, 6)
    assert verdict.winner == "challenger" and verdict.confidence > 0.999 and verdict.preference > 0.8


def test_no_verdict_on_few_lists_or_an_even_split():
    placed = {"x": A, "y": B}
    few = [e for n in range(10) for e in _list(n, placed, ["y"])]
    assert interleaving.verdict(pd.DataFrame(few), A, B).winner is None  # 10 wins: below MIN_LISTS
    even = [e for n in range(200) for e in _list(n, placed, ["y"] if n % 2 else ["x"])]
    verdict = interleaving.verdict(pd.DataFrame(even), A, B)
    assert verdict.winner is None and verdict.challenger_wins == verdict.champion_wins == 100
    worse = [e for n in range(60) for e in _list(n, placed, ["x"] if n % 5 else ["y"])]
    assert interleaving.verdict(pd.DataFrame(worse), A, B).winner == "champion"


def test_a_spent_budget_ends_on_non_inferiority():
    # given an even split past the budget / then the fresher challenger serves (not worse by the margin);
    # given a split slightly against it (47.3%, not significant as worse) past the budget / then it is rejected
    placed = {"x": A, "y": B}
    n = interleaving.MAX_LISTS
    even = [e for i in range(n) for e in _list(i, placed, ["y"] if i % 2 else ["x"])]
    verdict = interleaving.verdict(pd.DataFrame(even), A, B)
    assert (verdict.winner, verdict.rule) == ("challenger", "not worse") and verdict.p_value > 0.05
    assert "not worse than the champion by 5%" in verdict.reason()
    short = [e for i in range(n - 10) for e in _list(i, placed, ["y"] if i % 2 else ["x"])]
    assert interleaving.verdict(pd.DataFrame(short), A, B).winner is None  # within the budget: undecided
    behind = [e for i in range(n) for e in _list(i, placed, ["y"] if i < 293 else ["x"])]  # 47.3%
    verdict = interleaving.verdict(pd.DataFrame(behind), A, B)
    assert verdict.p_value > 0.05 and (verdict.winner, verdict.rule) == ("champion", "not worse")


def _verdict(winner: str | None) -> interleaving.Verdict:
    return interleaving.Verdict(A, B, 100, 80, 60 if winner == "challenger" else 10,
                                10 if winner == "challenger" else 60, 10, 1e-6, winner)


@pytest.mark.parametrize("winner, outcome", [("challenger", "promoted"), ("champion", "rejected"), (None, None)])
def test_the_registry_acts_on_the_verdict_and_records_why(tmp_path, winner, outcome):
    settings = Settings(home=tmp_path)
    metrics = {"model": 0.8, "bm25": 0.7, "metric": "ndcg@10"}
    assert registry.promote(settings, A, metrics) == (True, "beats BM25 and is not below the champion")
    promoted, reason = registry.promote(settings, B, {**metrics, "model": 0.82}, online=True)
    assert not promoted and "challenger" in reason and registry.champion(settings)["tag"] == A
    assert registry.challenger(settings)["tag"] == B
    assert registry.conclude(settings, _verdict(winner)) == outcome
    assert registry.champion(settings)["tag"] == (B if outcome == "promoted" else A)
    assert (registry.challenger(settings) is None) == (outcome is not None)
    events = [entry["event"] for entry in registry.history(settings)]
    assert events == ["promotion", "challenge"] + {"promoted": ["promotion"], "rejected": ["rejected"], None: []}[outcome]
    if outcome == "promoted":
        last = registry.history(settings)[-1]
        assert last["replaced"] == A and "offline gate" in last["reason"] and "interleaving" in last["reason"]
