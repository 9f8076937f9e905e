"""Market simulator v0: a synthetic shop whose search traffic has real ranking phenomena.

Items have typed attributes; shoppers have latent tastes and heavy-tailed activity; queries come
from shopper intent; every (query, item) pair has an ESCI-style grade derived from attributes;
impressions come from a logging ranker, and clicks follow a position-based model (examination
falls with rank, attraction follows relevance, quality and taste). Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from shoploop.data.catalog import (
    ADJECTIVES, BRANDS, COLOURS, FEATURES, REVIEW_PHRASES, TYPES, VAGUE_WORDS, ProductType, top_category,
)

LOGGING_MODEL = "sim-lexical-v0"
SLATE = 10
NAMESPACE = uuid.UUID("5b0c1e6a-3c36-4c2e-9a38-2f3b6c1d7e01")


@dataclass(frozen=True)
class Intent:
    """What a shopper wants: a product type, optionally a colour, material, brand or price bound."""

    type_name: str
    colour: str | None = None
    material: str | None = None
    brand: str | None = None
    max_price: float | None = None


def query_id_for(text: str) -> str:
    return "q" + hashlib.md5(" ".join(text.lower().split()).encode()).hexdigest()[:12]


def tokens(text: str) -> set[str]:
    return set(text.lower().replace(",", " ").split())


def grade(intent: Intent, item: dict) -> int:
    """ESCI grade: 3 exact, 2 substitute, 1 complement, 0 irrelevant."""
    if item["type"] == intent.type_name:
        wanted = [(intent.colour, item["colour"]), (intent.material, item["material"]), (intent.brand, item["brand"])]
        exact = all(w is None or w == have for w, have in wanted)
        if intent.max_price is not None and item["price"] > intent.max_price:
            exact = False
        return 3 if exact else 2
    if item["type"] in TYPE_BY_NAME_COMPLEMENTS.get(intent.type_name, ()):
        return 1
    return 0


TYPE_BY_NAME_COMPLEMENTS = {t.name: t.complements for t in TYPES}


class MarketSimulator:
    def __init__(self, seed: int, n_items: int, n_users: int, n_days: int, sessions_per_day: int):
        self.seed, self.n_items, self.n_users = seed, n_items, n_users
        self.n_days, self.sessions_per_day = n_days, sessions_per_day
        self.rng = np.random.default_rng(seed)

    # --- catalog -------------------------------------------------------------------------
    def items(self, start: datetime) -> pd.DataFrame:
        rng = self.rng
        rows = []
        # Type popularity is itself skewed: some product types sell far more than others.
        type_weights = rng.dirichlet(np.full(len(TYPES), 0.8))
        type_idx = rng.choice(len(TYPES), size=self.n_items, p=type_weights)
        for i, t_i in enumerate(type_idx):
            t: ProductType = TYPES[t_i]
            brand = rng.choice(BRANDS[top_category(t.category_path)])
            colour, material, size = rng.choice(COLOURS), rng.choice(t.materials), rng.choice(t.sizes)
            # Heavy-tailed prices per type: lognormal around the type's median.
            price = round(float(t.median_price * rng.lognormal(0.0, 0.45)), 2)
            quality = float(rng.normal())
            rating = float(np.clip(3.9 + 0.6 * quality + rng.normal(0, 0.3), 1.0, 5.0))
            review_count = int(rng.pareto(1.3) * 8 * np.exp(0.4 * quality))
            type_word = t.name if rng.random() < 0.7 else rng.choice(t.synonyms)
            adjective = rng.choice(ADJECTIVES)
            title = rng.choice([
                f"{brand} {adjective} {colour} {material} {type_word}, {size}",
                f"{brand} {type_word} - {colour}, {material}, {size}",
                f"{adjective.title()} {material} {type_word} by {brand} ({colour}, {size})",
            ])
            feats = rng.choice(FEATURES, size=2, replace=False)
            description = (
                f"This {colour} {type_word} from {brand} is made of {material}. "
                f"Size {size}. {feats[0].capitalize()} and {feats[1]}. "
                f"Part of our {t.category_path.split(' > ')[-1].lower()} range."
            )
            # Most of the catalog predates the window; about 5% arrives during it (new items).
            age_days = rng.uniform(-self.n_days, 365) if rng.random() < 0.05 else rng.uniform(0, 365)
            created = start - timedelta(days=float(age_days))
            rows.append({
                "item_id": f"i{i:06d}", "title": title, "description": description, "brand": str(brand),
                "category_path": f"{t.category_path} > {t.name.title()}",
                "attributes": json.dumps({"type": t.name, "colour": str(colour), "material": str(material), "size": str(size)}),
                "price": price, "currency": "EUR", "image_url": None, "rating": round(rating, 1),
                "review_count": review_count, "created_at": created,
                # Latent truth, used by the simulator only, never landed.
                "type": t.name, "colour": str(colour), "material": str(material), "quality": quality,
            })
        return pd.DataFrame(rows)

    def users(self, start: datetime) -> pd.DataFrame:
        rng = self.rng
        cats = list(BRANDS)
        rows = []
        for u in range(self.n_users):
            rows.append({
                "user_id": f"u{u:06d}",
                "signup_ts": start - timedelta(days=float(rng.uniform(1, 900))),
                "attributes": json.dumps({"country": str(rng.choice(["DE", "FR", "NL", "ES", "IT"])),
                                          "device": str(rng.choice(["mobile", "desktop", "tablet"], p=[0.6, 0.33, 0.07]))}),
                # Latent tastes: category mix, price sensitivity, heavy-tailed activity.
                "taste": rng.dirichlet(np.full(len(cats), 0.5)),
                "price_sensitivity": float(rng.gamma(2.0, 0.5)),
                "activity": float(rng.pareto(1.5) + 0.1),
            })
        return pd.DataFrame(rows)

    # --- queries ---------------------------------------------------------------------------
    def intent_text(self, intent: Intent) -> str:
        rng = self.rng
        t = next(t for t in TYPES if t.name == intent.type_name)
        head = intent.type_name if rng.random() < 0.6 else str(rng.choice(t.synonyms))
        mods = [m for m in (intent.brand, intent.colour, intent.material) if m]
        words = mods + [head]
        if rng.random() < 0.2:  # word-order change: "pan frying cast iron"
            words = [head] + mods
        if intent.max_price is not None:
            words.append(f"under {int(intent.max_price)}")
        if rng.random() < 0.1:
            words.insert(0, str(rng.choice(VAGUE_WORDS)))
        text = " ".join(words)
        if rng.random() < 0.08:  # a misspelling: two adjacent letters swapped in one word
            chars = list(text)
            j = int(rng.integers(0, max(1, len(chars) - 2)))
            if chars[j] != " " and chars[j + 1] != " ":
                chars[j], chars[j + 1] = chars[j + 1], chars[j]
            text = "".join(chars)
        return text

    def query_pool(self, items: pd.DataFrame, n_queries: int) -> pd.DataFrame:
        rng = self.rng
        rows, seen = [], set()
        while len(rows) < n_queries:
            t = TYPES[int(rng.integers(len(TYPES)))]
            intent = Intent(
                t.name,
                colour=str(rng.choice(COLOURS)) if rng.random() < 0.35 else None,
                material=str(rng.choice(t.materials)) if rng.random() < 0.25 else None,
                brand=str(rng.choice(BRANDS[top_category(t.category_path)])) if rng.random() < 0.15 else None,
                max_price=float(round(t.median_price * 1.2)) if rng.random() < 0.1 else None,
            )
            text = self.intent_text(intent)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"query_id": query_id_for(text), "query_text": text, "intent": intent,
                         "category": top_category(t.category_path)})
        return pd.DataFrame(rows)

    # --- behaviour -------------------------------------------------------------------------
    def logging_scores(self, query_text: str, item_tokens: list[set[str]], log_pop: np.ndarray) -> np.ndarray:
        """The ranker serving while the simulator logs: lexical overlap plus a popularity prior."""
        q = tokens(query_text)
        overlap = np.fromiter((len(q & it) / np.sqrt(len(it)) for it in item_tokens), float, len(item_tokens))
        return overlap + 0.15 * log_pop

    def sessions(self, items, users, pool, start: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = self.rng
        item_recs = items.to_dict("records")
        item_tokens = [tokens(f"{r['title']} {r['brand']}") for r in item_recs]
        log_pop = np.log1p(items["review_count"].to_numpy())
        quality = items["quality"].to_numpy()
        prices = items["price"].to_numpy()
        type_median = np.array([next(t.median_price for t in TYPES if t.name == ty) for ty in items["type"]])
        grades_cache: dict[str, np.ndarray] = {}
        score_cache: dict[str, np.ndarray] = {}
        cats = list(BRANDS)
        by_cat = {c: pool.index[pool["category"] == c].to_numpy() for c in cats}
        # Zipf-like query popularity inside each category: head queries repeat, the tail is long.
        zipf = {c: (w := 1.0 / np.arange(1, len(ix) + 1) ** 1.1) / w.sum() for c, ix in by_cat.items() if len(ix)}
        activity = users["activity"].to_numpy()
        user_p = activity / activity.sum()
        item_cat = np.array([cats.index(top_category(p)) for p in items["category_path"]])
        events = []
        n = 0
        for day in range(self.n_days):
            for s in range(self.sessions_per_day):
                u = int(rng.choice(len(users), p=user_p))
                user = users.iloc[u]
                cat = cats[int(rng.choice(len(cats), p=user["taste"]))]
                if cat not in zipf:
                    continue
                q = pool.loc[by_cat[cat][int(rng.choice(len(by_cat[cat]), p=zipf[cat]))]]
                if q.query_text not in grades_cache:
                    grades_cache[q.query_text] = np.array([grade(q.intent, r) for r in item_recs])
                    score_cache[q.query_text] = self.logging_scores(q.query_text, item_tokens, log_pop)
                g = grades_cache[q.query_text]
                noisy = score_cache[q.query_text] + rng.gumbel(0, 0.15, len(item_recs))
                slate = np.argsort(-noisy)[:SLATE]
                ts = start + timedelta(days=day, seconds=float(rng.uniform(0, 86_400 - 600)))
                session_id = f"s{day:03d}{s:05d}-{self.seed}"
                n += 1
                for pos, i in enumerate(slate, start=1):
                    t_ev = ts + timedelta(seconds=pos)
                    base = dict(session_id=session_id, user_id=user.user_id, item_id=items.item_id.iat[i],
                                query_id=q.query_id, query_text=q.query_text, position=pos, surface="search",
                                model_version=LOGGING_MODEL, price_seen=float(prices[i]))
                    events.append(self._event(base, "impression", t_ev))
                    examined = rng.random() < (1.0 / pos) ** 0.9
                    taste = user["taste"][item_cat[i]]
                    price_pain = user["price_sensitivity"] * np.log(prices[i] / type_median[i])
                    attract = 1 / (1 + np.exp(-(-2.4 + 1.1 * g[i] + 0.5 * quality[i] + 1.5 * taste - 0.3 * price_pain)))
                    if not (examined and rng.random() < attract):
                        continue
                    events.append(self._event(base, "click", t_ev + timedelta(seconds=5)))
                    events.append(self._event(base, "view", t_ev + timedelta(seconds=6)))
                    if rng.random() < 0.15 + 0.08 * g[i] - 0.05 * price_pain:
                        events.append(self._event(base, "add_to_cart", t_ev + timedelta(seconds=60)))
                        if rng.random() < 0.55 - 0.1 * price_pain:
                            events.append(self._event(base, "purchase", t_ev + timedelta(seconds=300)))
        return pd.DataFrame(events), pd.DataFrame({"n_sessions": [n]})

    def _event(self, base: dict, event_type: str, ts: datetime) -> dict:
        key = f"{base['session_id']}|{base['position']}|{event_type}"
        return {"event_id": str(uuid.uuid5(NAMESPACE, key)), "ts": ts, "event_type": event_type, **base}

    def reviews(self, items: pd.DataFrame, users: pd.DataFrame, start: datetime) -> pd.DataFrame:
        rng = self.rng
        rows = []
        for r in items.itertuples():
            for k in range(min(r.review_count, 3)):
                stars = int(np.clip(round(r.rating + rng.normal(0, 0.8)), 1, 5))
                phrases = rng.choice(REVIEW_PHRASES[stars], size=2, replace=False)
                rows.append({
                    "review_id": f"r{r.item_id}-{k}", "item_id": r.item_id,
                    "user_id": users.user_id.iat[int(rng.integers(len(users)))], "rating": stars,
                    "text": f"{phrases[0].capitalize()}. {phrases[1].capitalize()}, this {r.type}.",
                    "ts": start - timedelta(days=float(rng.uniform(0, 300))),
                })
        return pd.DataFrame(rows)

    def judgments(self, items: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
        """Graded labels for every pool query: all relevant items plus a sample of irrelevant ones."""
        rng = self.rng
        recs = items.to_dict("records")
        rows = []
        for q in pool.itertuples():
            g = np.array([grade(q.intent, r) for r in recs])
            negatives = rng.choice(np.flatnonzero(g == 0), size=min(20, int((g == 0).sum())), replace=False)
            for i in np.concatenate([np.flatnonzero(g > 0), negatives]):
                rows.append({"query_id": q.query_id, "query_text": q.query_text,
                             "item_id": recs[i]["item_id"], "grade": int(g[i])})
        return pd.DataFrame(rows)

    def run(self, run_date: date, n_queries: int = 400) -> dict[str, pd.DataFrame]:
        start = datetime.combine(run_date - timedelta(days=self.n_days), datetime.min.time())
        items = self.items(start)
        users = self.users(start)
        pool = self.query_pool(items, n_queries)
        events, _ = self.sessions(items, users, pool, start)
        reviews = self.reviews(items, users, start)
        judgments = self.judgments(items, pool)
        return {
            "items": items.drop(columns=["type", "colour", "material", "quality"]),
            "users": users[["user_id", "signup_ts", "attributes"]],
            "reviews": reviews, "events": events, "judgments": judgments,
        }
