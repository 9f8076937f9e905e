"""Online evaluation: a challenger against the champion by team-draft interleaving.

Once a new version passes the offline gate while the champion serves shoppers, it becomes the
challenger (shoploop.models.registry): a share of searches (``settings.interleave_share``) is answered with
one list drawn from both rankings by team draft (Radlinski, Kurup & Joachims, "How does clickthrough
data reflect retrieval quality?", CIKM 2008): in each round the model with fewer picks so far (a coin
toss on a tie) places its best item not yet placed. Each hit names the model that placed it
(``Hit.model_version``); clients echo it in the hit's events, so every click is credited to one model.

The verdict (``verdict``) counts, per interleaved list (a session's impressions for one query), which
model's items drew more clicks; a two-sided sign test over the lists with a winner (ties count for
neither) gives its confidence. Interleaving compares the two on the same shoppers, queries and
positions at once, which needs one to two orders of magnitude fewer sessions than an A/B test of CTR
(Chapelle et al., "Large-scale validation and analysis of interleaved search evaluation", TOIS 2012).

The coin tosses are seeded by the request (query, shopper, filters), so the pages of one search come
from one interleaved list and a repeated search shows the same list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Confidence a verdict needs, and the fewest lists with a winner before one is given.
CONFIDENCE = 0.95
MIN_LISTS = 30
# The experiment's budget: once this many lists have a winner and neither model is better at CONFIDENCE,
# it ends on non-inferiority (a fixed horizon, so shoppers never wait on an even split forever, nor does
# anything queued behind a challenger): the challenger, trained on fresher data, serves if its share of
# the won lists is above 1/2 - NON_INFERIORITY_MARGIN at CONFIDENCE (one-sided), else it is rejected.
# 620 lists give 80% power to show an equally good challenger non-inferior at a 5-point margin
# (n = ((z_0.95 + z_0.8) * 0.5 / 0.05)^2).
MAX_LISTS = 620
NON_INFERIORITY_MARGIN = 0.05


def team_draft(first: list[str], second: list[str], k: int, seed: int) -> list[tuple[str, int]]:
    """Up to ``k`` items interleaved from two rankings (ids, best first), each with its team (0: first, 1: second)."""
    rng = np.random.default_rng(seed)
    rankings, at, picks = (first, second), [0, 0], [0, 0]
    placed: set[str] = set()
    out: list[tuple[str, int]] = []
    while len(out) < k:
        for team in (0, 1):  # skip what the other team already placed
            while at[team] < len(rankings[team]) and rankings[team][at[team]] in placed:
                at[team] += 1
        left = [team for team in (0, 1) if at[team] < len(rankings[team])]
        if not left:
            break
        if len(left) == 1:
            team = left[0]
        elif picks[0] != picks[1]:
            team = int(picks[1] < picks[0])
        else:
            team = int(rng.random() < 0.5)
        item = rankings[team][at[team]]
        out.append((item, team))
        placed.add(item)
        picks[team] += 1
    return out


def seed_of(*parts) -> int:
    """A stable seed for one request (the same on every worker and replica)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def chosen(share: float, *parts) -> bool:
    """Is this request one of the interleaved share? (Stable per request: its pages agree.)"""
    return share > 0 and (seed_of("share", *parts) % 10_000) < share * 10_000


@dataclass(frozen=True)
class Verdict:
    champion: str
    challenger: str
    lists: int            # interleaved lists shown (a session's impressions for one query holding both teams)
    clicked_lists: int    # of those, lists with a click
    challenger_wins: int
    champion_wins: int
    ties: int
    p_value: float        # two-sided sign test over the lists with a winner
    winner: str | None    # "challenger", "champion", or None while undecided
    rule: str = "better"  # "better" (the sign test), or "not worse" (the budget spent: non-inferiority)

    @property
    def confidence(self) -> float:
        return round(1 - self.p_value, 4)

    @property
    def preference(self) -> float:
        """Chapelle et al.'s delta: (challenger wins - champion wins) / clicked lists, in [-1, 1]."""
        return round((self.challenger_wins - self.champion_wins) / max(self.clicked_lists, 1), 4)

    def as_dict(self) -> dict:
        return {**self.__dict__, "p_value": round(self.p_value, 6), "confidence": self.confidence,
                "preference": self.preference}

    def reason(self) -> str:
        said = (f"interleaving over {self.lists} lists ({self.clicked_lists} clicked): challenger won "
                f"{self.challenger_wins}, champion {self.champion_wins}, ties {self.ties}; "
                f"confidence {self.confidence:.1%}")
        if self.rule == "not worse":
            won = self.challenger_wins / max(self.challenger_wins + self.champion_wins, 1)
            return said + (f"; budget of {MAX_LISTS} won lists spent with neither better: the challenger won "
                           f"{won:.1%} of them, " + ("not worse than the champion by " if self.winner == "challenger"
                                                     else "not shown within ") + f"{NON_INFERIORITY_MARGIN:.0%} "
                           f"(one-sided, {CONFIDENCE:.0%}) -> the {self.winner} serves")
        return said + (f" -> the {self.winner} is better" if self.winner else " -> undecided")


def verdict(events: pd.DataFrame, champion: str, challenger: str, confidence: float = CONFIDENCE,
            min_lists: int = MIN_LISTS, max_lists: int = MAX_LISTS) -> Verdict:
    """Credit each click of the interleaved lists in ``events`` (session_id, query_id, item_id, event_type,
    surface, model_version; one row per event) to the team that placed the item, and decide."""
    from scipy.stats import binomtest

    search = events[(events["surface"] == "search") & events["model_version"].isin([champion, challenger])]
    key = ["session_id", "query_id"]
    shown = search[search["event_type"] == "impression"]
    teams = shown.groupby(key, dropna=False)["model_version"].nunique()
    interleaved = teams[teams == 2].index
    clicks = search[search["event_type"] == "click"].drop_duplicates([*key, "item_id"])
    clicks = clicks.set_index(key).loc[lambda c: c.index.isin(interleaved)]
    per_list = clicks.groupby(level=[0, 1])["model_version"].value_counts().unstack(fill_value=0)
    theirs = per_list.get(challenger, pd.Series(0, index=per_list.index))
    ours = per_list.get(champion, pd.Series(0, index=per_list.index))
    wins_b, wins_a = int((theirs > ours).sum()), int((ours > theirs).sum())
    decided = wins_a + wins_b
    p = binomtest(wins_b, decided, 0.5).pvalue if decided else 1.0
    winner, rule = None, "better"
    if decided >= min_lists and p < 1 - confidence:
        winner = "challenger" if wins_b > wins_a else "champion"
    elif decided >= max_lists:
        rule = "not worse"
        not_worse = binomtest(wins_b, decided, 0.5 - NON_INFERIORITY_MARGIN, alternative="greater").pvalue
        winner = "challenger" if not_worse < 1 - confidence else "champion"
    return Verdict(champion, challenger, len(interleaved), len(per_list), wins_b, wins_a,
                   int(len(per_list) - decided), float(p), winner, rule)
