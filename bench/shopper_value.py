"""What the simulated shoppers would do with each model's answers: expected clicks and purchases per
search, computed from the simulator's own click model (not drawn), on the same sessions for every model.

Interleaving and the loop's side-by-side runs measure this online, over HTTP, with sampled clicks; this
bench asks the same question offline and without the noise of drawing, so two models that differ a
little can be told apart in seconds, and where the difference comes from can be read off (relevance of
the top ten against the quality, taste and price of what is shown). It is a diagnostic for the
simulator only: a real shop has no click model to ask, and uses interleaving (shoploop.serving.interleaving).

For session s (the same stream as shoploop.data.live.MarketShoppers): a shopper drawn by activity,
their query drawn by taste (moved if the trend shift has started), each model's top ten; an item at
position p is examined with probability (1/p)^0.9 and then clicked with the simulator's attraction,
added to the cart and bought with its cart and purchase chances. The difference between two models is
per session (paired) with a bootstrap 95% interval.

``.venv/bin/python bench/shopper_value.py --home HOME --date YYYY-MM-DD NAME=BUNDLE_DIR ... [--drifted]``
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
K = 10


def engine(settings, bundle_dir: Path, latest):
    from shoploop.models.bundle import ModelBundle
    from shoploop.serving.predict import SearchEngine, frame_lookup

    bundle = ModelBundle.load(bundle_dir)
    return SearchEngine(bundle, bundle.text_encoder(), frame_lookup(latest))


def sessions(shoppers, n: int, drifted: bool) -> list[tuple[int, int, np.ndarray, str]]:
    """(user row, query row, taste, query text) of sessions 0..n-1, drawn as MarketShoppers.run draws them."""
    return [shoppers.draw(s, drifted)[1:] for s in range(n)]


def expected(shoppers, eng, drawn) -> dict[str, np.ndarray]:
    """Per session: expected clicks and purchases of the model's top ten, and what was shown."""
    from shoploop.data.simulator import attraction, price_pain

    cat = shoppers.catalog
    exam = (1.0 / np.arange(1, K + 1)) ** 0.9
    rows_of_text: dict[str, np.ndarray] = {}
    out = {name: np.zeros(len(drawn)) for name in ("clicks", "purchases", "grade", "quality", "taste", "pain", "exact")}
    for n, (user, q, taste, text) in enumerate(drawn):
        if text not in rows_of_text:
            found, _ = eng.search_rows(text, K)
            rows_of_text[text] = np.array([shoppers.row.get(eng.item_ids[r], -1) for r in found], dtype=np.int64)
        rows = rows_of_text[text]
        rows = rows[rows >= 0]
        if not len(rows):
            continue
        g = shoppers.grades(q)[rows].astype(float)
        pain = price_pain(float(shoppers.users["price_sensitivity"].iloc[user]), cat.price[rows], cat.type[rows])
        t = taste[cat.category[rows]]
        click = exam[:len(rows)] * attraction(g, cat.quality[rows], t, pain)
        buy = click * np.clip(0.15 + 0.08 * g - 0.05 * pain, 0, 1) * np.clip(0.55 - 0.1 * pain, 0, 1)
        w = exam[:len(rows)] / exam[:len(rows)].sum()
        out["clicks"][n], out["purchases"][n] = click.sum(), buy.sum()
        for name, v in (("grade", g), ("quality", cat.quality[rows]), ("taste", t), ("pain", pain), ("exact", g == 3)):
            out[name][n] = float(w @ v)  # examination-weighted mean over the shown items
    return out


def paired(a: np.ndarray, b: np.ndarray, seed: int = 7, draws: int = 2000) -> tuple[float, float, float]:
    """Mean of a - b per session and its bootstrap 95% interval."""
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (draws, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    from shoploop import features
    from shoploop.data.live import MarketShoppers
    from shoploop.pipeline.loop import loop_settings
    from shoploop.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=BUNDLE_DIR; the first is the reference")
    ap.add_argument("--home", type=Path, required=True, help="the shop's home (its latest features are used)")
    ap.add_argument("--date", type=date.fromisoformat, required=True, help="the day the shoppers shop")
    ap.add_argument("--loop", choices=("small", "default"), help="the home is a `shoploop loop --scale` home")
    ap.add_argument("--drifted", action="store_true", help="the drift scenarios have started")
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--note", default="", help="what the models are, saved with the result (the README's table shows it)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shopper_value.json")
    args = ap.parse_args()

    settings = Settings().model_copy(update={"home": args.home})
    if args.loop:  # the loop's shop: its scale and drift, the home as given
        settings = loop_settings(settings, args.date, args.loop).model_copy(update={"home": args.home})
    shoppers = MarketShoppers(settings, args.date)
    drawn = sessions(shoppers, args.sessions, args.drifted)
    latest = features.latest_item_features(settings)
    results = {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        results[name] = expected(shoppers, engine(settings, Path(path), latest), drawn)
    ref = args.models[0].partition("=")[0]
    table = []
    print(f"{args.sessions} sessions on {args.date} ({'drifted' if args.drifted else 'no drift'}), top {K}; "
          f"difference against {ref}, 95% interval")
    print(f"{'model':<14}{'clicks/search':>14}{'purchases':>11}{'grade':>7}{'exact':>7}{'quality':>9}{'taste':>7}{'pain':>7}  clicks vs ref")
    for name, r in results.items():
        row = {"model": name, **{k: round(float(v.mean()), 4) for k, v in r.items()}}
        if name != ref:
            mean, lo, hi = paired(r["clicks"], results[ref]["clicks"])
            row["clicks_vs_ref"] = {"mean": round(mean, 4), "low": round(lo, 4), "high": round(hi, 4)}
        table.append(row)
        vs = row.get("clicks_vs_ref")
        print(f"{name:<14}{row['clicks']:>14.4f}{row['purchases']:>11.4f}{row['grade']:>7.3f}{row['exact']:>7.3f}"
              f"{row['quality']:>9.3f}{row['taste']:>7.3f}{row['pain']:>7.3f}  "
              + (f"{vs['mean']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}]" if vs else "reference"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "machine": platform.node(), "home": str(args.home), "date": args.date.isoformat(),
                                    "drifted": args.drifted, "sessions": args.sessions, "note": args.note, "models": table}, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
