"""`shoploop report data`: a markdown report with plots a person looks at before trusting the data.

Catalog mix, price distribution, the popularity curve, click-through by position, and the daily
signals each drift scenario moves (with the scenarios' start dates marked). Reads the cleaned
staging tables of the warehouse, so what it shows is what the marts are built from.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop.data.simulator import parse_drifts
from shoploop.settings import Settings
from shoploop.warehouse import connected

DAILY_SIGNALS = {
    "sports_share": ("share of search sessions in Sports & Outdoors", "trend_shift"),
    "electronics_price": ("mean Electronics price seen", "price_shock"),
    "new_item_share": ("share of impressions on items that arrived during the window", "new_items"),
    "new_query_share": ("share of queries not seen on the first day", "vocab_shift"),
    "anonymous_bot_share": ("share of events from the 5 busiest shoppers", "bots"),
}


def _frames(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    with connected(settings, "write the data report") as con:
        items = con.execute("select item_id, category, price, created_at from stg_items where reject_reason is null and duplicate_of is null").df()
        events = con.execute("select session_id, user_key, event_type, item_id, query_text, position, price_seen, ts "
                             "from stg_events where reject_reason is null and surface = 'search'").df()
    return items, events


def daily_signals(items: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    e = events.merge(items[["item_id", "category", "created_at"]], on="item_id", how="left")
    e["day"] = e["ts"].dt.floor("D")
    shown = e[e["event_type"] == "impression"]
    first_item = shown.sort_values("position").drop_duplicates("session_id")
    first_day_queries = set(shown.loc[shown["day"] == shown["day"].min(), "query_text"])
    busiest = e["user_key"].value_counts().index[:5]
    return pd.DataFrame({
        "sports_share": first_item.groupby("day")["category"].apply(lambda c: (c == "Sports & Outdoors").mean()),
        "electronics_price": shown[shown["category"] == "Electronics"].groupby("day")["price_seen"].mean(),
        "new_item_share": shown.groupby("day")["created_at"].apply(lambda c: (c >= e["day"].min()).mean()),
        "new_query_share": shown.groupby("day")["query_text"].apply(lambda q: (~q.isin(first_day_queries)).mean()),
        "anonymous_bot_share": e.groupby("day")["user_key"].apply(lambda u: u.isin(busiest).mean()),
    })


def data_report(settings: Settings, run_date: date) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items, events = _frames(settings)
    out = settings.reports / str(run_date) / "data"
    out.mkdir(parents=True, exist_ok=True)
    shown = events[events["event_type"] == "impression"]
    clicks = events[events["event_type"] == "click"]
    ctr = (clicks.groupby("position").size() / shown.groupby("position").size()).fillna(0)
    popularity = clicks["item_id"].value_counts().to_numpy()
    mix = items["category"].value_counts()

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    mix.plot.barh(ax=axes[0, 0], title="catalog mix (items per category)")
    for category, prices in items.dropna(subset=["price"]).groupby("category")["price"]:
        axes[0, 1].hist(np.log10(prices), bins=40, histtype="step", label=category)
    axes[0, 1].set(title="price distribution", xlabel="log10 price")
    axes[0, 1].legend(fontsize=7)
    axes[1, 0].loglog(np.arange(1, len(popularity) + 1), popularity)
    axes[1, 0].set(title="popularity curve (clicks per item, by rank)", xlabel="item rank", ylabel="clicks")
    axes[1, 1].plot(ctr.index, ctr.to_numpy(), marker="o")
    axes[1, 1].set(title="click-through by position", xlabel="position", ylabel="CTR")
    fig.tight_layout()
    fig.savefig(out / "overview.png", dpi=90)
    plt.close(fig)

    signals = daily_signals(items, events)
    drifts = parse_drifts(settings.drift)
    fig, axes = plt.subplots(len(DAILY_SIGNALS), 1, figsize=(10, 2.2 * len(DAILY_SIGNALS)), sharex=True)
    for ax, (column, (label, drift_name)) in zip(axes, DAILY_SIGNALS.items()):
        ax.plot(signals.index, signals[column], marker=".")
        ax.set_title(f"{label}  (moved by {drift_name})", fontsize=9)
        for d in drifts:
            if d.name == drift_name:
                ax.axvline(pd.Timestamp(d.start), color="red", linestyle="--")
    fig.tight_layout()
    fig.savefig(out / "drift_signals.png", dpi=90)
    plt.close(fig)

    top_decile = popularity[: max(1, len(popularity) // 10)].sum() / max(1, popularity.sum())
    lines = [
        f"# shoploop data report, {run_date}", "",
        f"{len(items):,} items in {items['category'].nunique()} categories; {events['session_id'].nunique():,} search "
        f"sessions, {len(shown):,} impressions, {len(clicks):,} clicks, "
        f"{(events['event_type'] == 'purchase').sum():,} purchases, over {events['ts'].dt.date.nunique()} days.", "",
        "![overview](overview.png)", "",
        f"- Prices: median {items['price'].median():.2f}, 99th percentile {items['price'].quantile(0.99):.2f}, "
        f"{items['price'].isna().sum()} items without a price.",
        f"- Popularity: the top 10% of clicked items take {top_decile:.0%} of clicks; "
        f"{(~items['item_id'].isin(clicks['item_id'])).sum():,} items were never clicked.",
        f"- Position bias: CTR {ctr.iloc[0]:.3f} at position 1, {ctr.iloc[len(ctr) // 2]:.3f} at "
        f"{ctr.index[len(ctr) // 2]}, {ctr.iloc[-1]:.3f} at {ctr.index[-1]}.", "",
        "## Drift scenarios", "",
        ("Active: " + ", ".join(f"`{d.name}` from {d.start}" for d in drifts)) if drifts else "No drift scenario is active.",
        "", "![daily signals](drift_signals.png)", "",
        "| signal | moved by | first day | last day |", "|---|---|---|---|",
        *[f"| {label} | {name} | {signals[col].iloc[0]:.3f} | {signals[col].iloc[-1]:.3f} |"
          for col, (label, name) in DAILY_SIGNALS.items()],
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
