"""Market simulator: a synthetic shop whose search traffic has real ranking phenomena.

Items have typed attributes; shoppers have latent tastes and heavy-tailed activity; queries come
from shopper intent; every (query, item) pair has an ESCI-style grade derived from attributes;
impressions come from whichever ranker is serving (a lexical one before any model), and clicks follow a position-based model (examination
falls with rank, attraction follows relevance, quality, taste and price). Drift scenarios switch
on by name at a date. Deterministic for a seed; vectorised so 200,000 items and a million events
take minutes, not hours.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from shoploop.data.catalog import (
    ADJECTIVES, BRANDS, COLOURS, FEATURES, REVIEW_PHRASES, TYPES, VAGUE_WORDS, top_category,
)
from shoploop.data.policies import LexicalPolicy, LoggingPolicy
from shoploop.data.relevance import CATEGORIES, TYPE_INDEX, Catalog, Intent, query_id_for

SLATE = 10
MAX_JUDGED = 500    # relevant items judged per query; beyond it a sample (TREC-style pooling)
NAMESPACE = uuid.UUID("5b0c1e6a-3c36-4c2e-9a38-2f3b6c1d7e01")
TYPE_MEDIAN_PRICE = np.array([t.median_price for t in TYPES])
DRIFTS = {
    "trend_shift": "40% of shoppers' attention moves to Sports & Outdoors",
    "price_shock": "Electronics prices rise by 60%",
    "new_items": "a wave of new items (10% of the catalog) arrives with no history",
    "vocab_shift": "queries switch to synonyms and new slang for the same intents",
    "bots": "bot sessions: a few ids, many sessions, clicks blind to position and relevance",
}


@dataclass(frozen=True)
class Drift:
    name: str
    start: date


def parse_drifts(spec: str) -> list[Drift]:
    """'trend_shift@2026-11-26,bots@2026-11-27' -> drifts; an unknown name is an error naming the choices."""
    drifts = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, start = part.partition("@")
        if name not in DRIFTS:
            raise ValueError(f"unknown drift {name!r}: use one of {', '.join(DRIFTS)}")
        try:
            drifts.append(Drift(name, date.fromisoformat(start)))
        except ValueError:
            raise ValueError(f"drift {name!r} needs a start date: {name}@YYYY-MM-DD") from None
    return drifts


def trend_shifted(taste: np.ndarray) -> np.ndarray:
    """trend_shift: 40% of every shopper's attention moves to one category."""
    shifted = taste * 0.6
    shifted[:, CATEGORIES.index("Sports & Outdoors")] += 0.4
    return shifted


def session_ids(start: datetime, day: np.ndarray, seed: int) -> np.ndarray:
    """'s<YYYYMMDD>-<n>-<seed>' for each session: its day's date, then its number in the run."""
    dates = np.char.replace((np.datetime64(start.date()) + day.astype("timedelta64[D]")).astype(str), "-", "")
    return np.char.add(np.char.add(np.char.add("s", dates), np.char.add("-", np.char.zfill(np.arange(len(day)).astype(str), 6))),
                       f"-{seed}")


def pick_queries(rng: np.random.Generator, taste: np.ndarray, pool: pd.DataFrame) -> np.ndarray:
    """One query (a row of the pool) per session: a category from the shopper's taste, then Zipf-like
    popularity inside it (head queries repeat, the tail is long)."""
    n = len(taste)
    category = (rng.random(n)[:, None] > taste.cumsum(1)).sum(1).clip(0, len(CATEGORIES) - 1)
    query = rng.integers(0, len(pool), n)
    for c in range(len(CATEGORIES)):
        in_cat, ix = category == c, np.flatnonzero(pool["category"].to_numpy() == c)
        if len(ix) and in_cat.any():
            zipf = 1.0 / np.arange(1, len(ix) + 1) ** 1.1
            query[in_cat] = ix[rng.choice(len(ix), in_cat.sum(), p=zipf / zipf.sum())]
    return query


def price_pain(sensitivity, price, type_idx) -> np.ndarray:
    """How much a price above its type's median puts the shopper off (their sensitivity times the log ratio)."""
    return sensitivity * np.log(price / TYPE_MEDIAN_PRICE[type_idx])


def attraction(grade, quality, taste, pain) -> np.ndarray:
    """The chance an examined result is clicked: relevance, quality, the shopper's taste for its
    category, and the price against the type's usual."""
    return 1 / (1 + np.exp(-(-2.4 + 1.1 * grade + 0.5 * quality + 1.5 * taste - 0.3 * pain)))


class MarketSimulator:
    def __init__(self, seed: int, n_items: int, n_users: int, n_days: int, sessions_per_day: int,
                 drifts: list[Drift] | tuple = ()):
        self.seed, self.n_items, self.n_users = seed, n_items, n_users
        self.n_days, self.sessions_per_day, self.drifts = n_days, sessions_per_day, list(drifts)
        self.rng = np.random.default_rng(seed)

    def drift_day(self, name: str, start: datetime) -> int | None:
        """The simulated day index a drift starts on, or None when it is off."""
        for d in self.drifts:
            if d.name == name:
                return max(0, (datetime.combine(d.start, datetime.min.time()) - start).days)
        return None

    # --- catalog -------------------------------------------------------------------------------
    def items(self, start: datetime) -> pd.DataFrame:
        rng, n = self.rng, self.n_items
        # A scheduled wave is drawn even before it starts, so the shop is the same one on every run date
        # (its items simply do not exist yet: they are held back below until they arrive).
        wave = self.drift_day("new_items", start)
        n_new = n // 10 if wave is not None else 0
        total = n + n_new
        # Type popularity is itself skewed: some product types sell far more than others.
        type_idx = rng.choice(len(TYPES), size=total, p=rng.dirichlet(np.full(len(TYPES), 0.8)))
        quality = rng.normal(size=total)
        # Heavy-tailed prices per type: lognormal around the type's median.
        price = np.round(TYPE_MEDIAN_PRICE[type_idx] * rng.lognormal(0.0, 0.45, total), 2)
        rating = np.clip(3.9 + 0.6 * quality + rng.normal(0, 0.3, total), 1.0, 5.0).round(1)
        review_count = (rng.pareto(1.3, total) * 8 * np.exp(0.4 * quality)).astype(np.int64)
        # Most of the catalog predates the window; ~5% arrives during it, plus any drift wave.
        age = np.where(rng.random(total) < 0.05, rng.uniform(-self.n_days, 0, total), rng.uniform(0, 365, total))
        if n_new:
            age[n:] = -rng.uniform(wave, max(self.n_days, wave + 1), n_new)
            review_count[n:], rating[n:] = 0, np.nan
        u = rng.random((total, 6))
        rows = []
        for i in range(total):
            t = TYPES[type_idx[i]]
            cat_brands = BRANDS[top_category(t.category_path)]
            brand = cat_brands[int(u[i, 0] * len(cat_brands))]
            colour = COLOURS[int(u[i, 1] * len(COLOURS))]
            material, size = t.materials[int(u[i, 2] * len(t.materials))], t.sizes[int(u[i, 3] * len(t.sizes))]
            type_word = t.name if u[i, 4] < 0.7 else t.synonyms[int(u[i, 4] * 10) % len(t.synonyms)]
            adjective = ADJECTIVES[i % len(ADJECTIVES)]
            template = int(u[i, 5] * 3)
            title = (f"{brand} {adjective} {colour} {material} {type_word}, {size}", f"{brand} {type_word} - {colour}, {material}, {size}",
                     f"{adjective.title()} {material} {type_word} by {brand} ({colour}, {size})")[template]
            f1, f2 = FEATURES[i % len(FEATURES)], FEATURES[(i * 7 + 3) % len(FEATURES)]
            rows.append((f"i{i:06d}", title, f"This {colour} {type_word} from {brand} is made of {material}. Size {size}. "
                         f"{f1.capitalize()} and {f2}. Part of our {t.category_path.split(' > ')[-1].lower()} range.",
                         brand, f"{t.category_path} > {t.name.title()}",
                         json.dumps({"type": t.name, "colour": colour, "material": material, "size": size}), colour, material))
        frame = pd.DataFrame(rows, columns=["item_id", "title", "description", "brand", "category_path", "attributes",
                                            "colour", "material"])
        frame = frame.assign(price=price, currency="EUR", image_url=None, rating=rating, review_count=review_count,
                             created_at=(start - pd.to_timedelta(age, unit="D")).floor("s"), type_idx=type_idx, quality=quality,
                             type=[TYPES[t].name for t in type_idx])
        shop = pd.concat([frame, self.relistings(frame, start)], ignore_index=True)
        return shop[shop["created_at"] < start + timedelta(days=self.n_days)].reset_index(drop=True)

    def relistings(self, frame: pd.DataFrame, start: datetime) -> pd.DataFrame:
        """Sellers list ~1% of products again under a new id: the same product, its title re-typed
        (case, spacing), a slightly different price, listed later, with few reviews of its own."""
        rng, n = self.rng, len(frame)
        dup = frame.iloc[np.sort(rng.choice(n, n // 100, replace=False))].copy()
        dup["item_id"] = [f"i{n + k:06d}" for k in range(len(dup))]
        dup["title"] = [t.upper() if k % 2 else "  " + t.replace(" ", "  ") for k, t in enumerate(dup["title"])]
        dup["price"] = (dup["price"] * rng.lognormal(0.0, 0.05, len(dup))).round(2)
        dup["review_count"] = dup["review_count"] // 5
        latest = pd.Timestamp(start + timedelta(days=self.n_days)) - pd.Timedelta(hours=1)
        dup["created_at"] = (dup["created_at"] + pd.to_timedelta(rng.uniform(1, 60, len(dup)), unit="D")).clip(upper=latest).dt.floor("s")
        return dup

    def users(self, start: datetime) -> tuple[pd.DataFrame, np.ndarray]:
        """Shoppers, and their latent category tastes (one row per user, summing to 1)."""
        rng, n = self.rng, self.n_users
        return pd.DataFrame({
            "user_id": [f"u{u:06d}" for u in range(n)],
            "signup_ts": (start - pd.to_timedelta(rng.uniform(1, 900, n), unit="D")).floor("s"),
            "attributes": [json.dumps({"country": c, "device": d}) for c, d in zip(
                rng.choice(["DE", "FR", "NL", "ES", "IT"], n), rng.choice(["mobile", "desktop", "tablet"], n, p=[0.6, 0.33, 0.07]))],
            # Latent: category tastes, price sensitivity, heavy-tailed activity.
            "price_sensitivity": rng.gamma(2.0, 0.5, n),
            "activity": rng.pareto(1.5, n) + 0.1,
        }), rng.dirichlet(np.full(len(CATEGORIES), 0.5), n)

    # --- queries ---------------------------------------------------------------------------------
    def intent_text(self, intent: Intent, synonym_p: float = 0.4) -> tuple[str, str]:
        """A surface form of the intent and its query type: exact (the type's own words, in order),
        paraphrase (a synonym, another word order or a vague word), attribute-only (no type word),
        misspelled (two adjacent letters swapped)."""
        rng = self.rng
        t = TYPES[TYPE_INDEX[intent.type_name]]
        kind = "exact"
        head = intent.type_name if rng.random() >= synonym_p else str(rng.choice(t.synonyms))
        if head != intent.type_name:
            kind = "paraphrase"
        attributes = [m for m in (intent.brand, intent.colour, intent.material) if m]
        words = attributes + [head]
        if rng.random() < 0.2:  # word-order change: "frying pan red"
            words, kind = words[-1:] + words[:-1], "paraphrase"
        if attributes and rng.random() < 0.08:  # the shopper names only what matters to them: "red cast iron"
            words, kind = [w for w in words if w != head], "attribute-only"
        if intent.max_price is not None:
            words.append(f"under {int(intent.max_price)}")
        if rng.random() < 0.1:
            words.insert(0, str(rng.choice(VAGUE_WORDS)))
            kind = "paraphrase" if kind == "exact" else kind
        text = " ".join(words)
        if rng.random() < 0.08:  # a misspelling: two adjacent letters swapped in one word
            j = int(rng.integers(0, max(1, len(text) - 2)))
            if text[j] != " " and text[j + 1] != " " and text[j] != text[j + 1]:
                text, kind = text[:j] + text[j + 1] + text[j] + text[j + 2:], "misspelled"
        return text, kind

    def query_pool(self, n_queries: int) -> pd.DataFrame:
        """Intents with their surface text; under vocab_shift each intent also gets a synonym-heavy form."""
        rng, rows, seen = self.rng, [], set()
        while len(rows) < n_queries:
            t = TYPES[int(rng.integers(len(TYPES)))]
            intent = Intent(
                t.name,
                colour=str(rng.choice(COLOURS)) if rng.random() < 0.35 else None,
                material=str(rng.choice(t.materials)) if rng.random() < 0.25 else None,
                brand=str(rng.choice(BRANDS[top_category(t.category_path)])) if rng.random() < 0.15 else None,
                max_price=float(round(t.median_price * 1.2)) if rng.random() < 0.1 else None,
            )
            text, kind = self.intent_text(intent)
            if text in seen:
                continue
            seen.add(text)
            shifted, shifted_kind = self.intent_text(intent, synonym_p=1.0) if self.drifts and any(
                d.name == "vocab_shift" for d in self.drifts) else (None, None)
            rows.append({"query_id": query_id_for(text), "query_text": text, "intent": intent, "query_type": kind,
                         "category": CATEGORIES.index(top_category(t.category_path)), "shifted_text": shifted,
                         "shifted_type": shifted_kind})
        return pd.DataFrame(rows)

    # --- behaviour -------------------------------------------------------------------------------
    def sessions(self, catalog: Catalog, users: pd.DataFrame, taste: np.ndarray, pool: pd.DataFrame,
                 start: datetime, policy: LoggingPolicy | None = None, first_day: int = 0) -> pd.DataFrame:
        """The window's sessions from day ``first_day`` on (the days before it were landed already: their
        logs stay as they were). Those days draw from a stream of their own, so they are new shoppers'
        visits, not a replay of the window's first days."""
        if first_day:
            self.rng = np.random.default_rng([self.seed, (start + timedelta(days=first_day)).toordinal()])
        rng = self.rng
        day = np.repeat(np.arange(first_day, self.n_days), self.sessions_per_day)
        n_sessions = len(day)
        user = rng.choice(len(users), n_sessions, p=(a := users["activity"].to_numpy()) / a.sum())
        taste_s = taste[user].copy()
        if (trend := self.drift_day("trend_shift", start)) is not None:
            taste_s[day >= trend] = trend_shifted(taste_s[day >= trend])
        query = pick_queries(rng, taste_s, pool)
        shifted = np.zeros(n_sessions, bool)
        if (vocab_day := self.drift_day("vocab_shift", start)) is not None:
            shifted = (day >= vocab_day) & (rng.random(n_sessions) < 0.6)
        bot = np.zeros(n_sessions, bool)
        if (bot_day := self.drift_day("bots", start)) is not None and bot_day < self.n_days:
            bot_day = max(bot_day, first_day)
            n_bot = int(0.3 * self.sessions_per_day * (self.n_days - bot_day))
            day = np.concatenate([day, rng.integers(bot_day, self.n_days, n_bot)])
            user = np.concatenate([user, rng.integers(0, 5, n_bot)])
            query = np.concatenate([query, rng.integers(0, len(pool), n_bot)])
            shifted, bot = np.concatenate([shifted, np.zeros(n_bot, bool)]), np.concatenate([bot, np.ones(n_bot, bool)])
            taste_s = np.concatenate([taste_s, np.full((n_bot, len(CATEGORIES)), 1 / len(CATEGORIES))])
        return self._slates_and_clicks(catalog, users, pool, start, day, user, query, shifted, bot, taste_s,
                                       policy or LexicalPolicy())

    def _slates_and_clicks(self, catalog, users, pool, start, day, user, query, shifted, bot, taste_s,
                           policy: LoggingPolicy) -> pd.DataFrame:
        rng = self.rng
        texts = np.where(shifted, pool["shifted_text"].to_numpy()[query], pool["query_text"].to_numpy()[query])
        candidates = policy.candidates(list(dict.fromkeys(texts)), catalog)
        grades = {i: catalog.grades(intent) for i, intent in enumerate(pool["intent"])}
        n = len(day)
        # Days since the window opened on which each item came online (negative: before it).
        online_day = ((catalog.frame["created_at"] - start).dt.total_seconds() / 86_400).to_numpy()
        slate = np.empty((n, SLATE), dtype=np.int64)
        for s in range(n):
            items, score = candidates[texts[s]]
            # An item cannot be shown before it exists (nor fill a slate: its score becomes -inf).
            noisy = np.where(online_day[items] < day[s], score + rng.gumbel(0, policy.noise, len(score)), -np.inf)
            slate[s] = items[np.argsort(-noisy)[:SLATE]]
        sess, pos = np.repeat(np.arange(n), SLATE), np.tile(np.arange(1, SLATE + 1), n)
        item = slate.ravel()
        g = np.array([grades[q][i] for q, i in zip(query[sess], item)], dtype=float)
        price = catalog.price[item].copy()
        if (shock := self.drift_day("price_shock", start)) is not None:
            price[(day[sess] >= shock) & (catalog.category[item] == CATEGORIES.index("Electronics"))] *= 1.6
        pain = price_pain(users["price_sensitivity"].to_numpy()[user[sess]], price, catalog.type[item])
        attract = attraction(g, catalog.quality[item], taste_s[sess, catalog.category[item]], pain)
        is_bot = bot[sess]
        # Humans examine top-down with falling attention; bots click blind to position and relevance.
        click = np.where(is_bot, rng.random(len(item)) < 0.5,
                         (rng.random(len(item)) < (1.0 / pos) ** 0.9) & (rng.random(len(item)) < attract))
        cart = click & ~is_bot & (rng.random(len(item)) < 0.15 + 0.08 * g - 0.05 * pain)
        purchase = cart & (rng.random(len(item)) < 0.55 - 0.1 * pain)
        ts0 = np.datetime64(start) + (day[sess] * 86_400 + (rng.uniform(0, 86_000, n)[sess]).astype(int) + pos).astype("timedelta64[s]")
        user_ids = np.where(bot, np.char.add("bot-", np.char.zfill(user.astype(str), 5)),
                            users["user_id"].to_numpy()[np.minimum(user, len(users) - 1)])
        base = pd.DataFrame({
            # Named by its day: sessions landed on different runs never share an id (nor their events).
            "session_id": session_ids(start, day, self.seed)[sess],
            "user_id": user_ids[sess], "item_id": catalog.frame["item_id"].to_numpy()[item],
            "query_id": [query_id_for(t) for t in texts[sess]] if shifted.any() else pool["query_id"].to_numpy()[query[sess]],
            "query_text": texts[sess], "position": pos, "surface": "search", "model_version": policy.name,
            "price_seen": price.round(2), "ts": ts0,
        })
        parts = [base.assign(event_type="impression")]
        for event_type, mask, delay in (("click", click, 5), ("view", click, 6), ("add_to_cart", cart, 60), ("purchase", purchase, 300)):
            parts.append(base[mask].assign(event_type=event_type, ts=base["ts"][mask] + pd.Timedelta(seconds=delay)))
        events = pd.concat(parts, ignore_index=True)
        keys = events["session_id"] + "|" + events["position"].astype(str) + "|" + events["event_type"]
        events["event_id"] = [str(uuid.uuid5(NAMESPACE, k)) for k in keys]
        return events.sort_values(["ts", "event_id"], ignore_index=True)

    def reviews(self, catalog: Catalog, users: pd.DataFrame, start: datetime) -> pd.DataFrame:
        rng, items = self.rng, catalog.frame
        per_item = np.minimum(items["review_count"].to_numpy(), 3)
        row = np.repeat(np.arange(len(items)), per_item)
        k = np.concatenate([np.arange(c) for c in per_item]) if len(row) else np.array([], int)
        # Tone follows the stars: phrases are drawn from the review's own rating.
        stars = np.clip(np.round(items["rating"].to_numpy()[row] + rng.normal(0, 0.8, len(row))), 1, 5).astype(int)
        pick = rng.integers(0, 4, (len(row), 2))
        texts = [f"{REVIEW_PHRASES[s][a].capitalize()}. {REVIEW_PHRASES[s][(a + 1 + b % 3) % 4].capitalize()}, this {t}."
                 for s, a, b, t in zip(stars, pick[:, 0], pick[:, 1], items["type"].to_numpy()[row])]
        return pd.DataFrame({
            "review_id": [f"r{i}-{j}" for i, j in zip(items["item_id"].to_numpy()[row], k)],
            "item_id": items["item_id"].to_numpy()[row], "rating": stars, "text": texts,
            "user_id": users["user_id"].to_numpy()[rng.integers(0, len(users), len(row))],
            "ts": (start - pd.to_timedelta(rng.uniform(0, 300, len(row)), unit="D")).floor("s"),
        })

    def judgments(self, catalog: Catalog, pool: pd.DataFrame, shifted: bool) -> pd.DataFrame:
        """Graded labels for every pool query (and its shifted form where ``shifted``: once shoppers type
        it): the relevant items, exact ones first, up to MAX_JUDGED, plus 20 sampled irrelevant ones."""
        rng, ids, frames = self.rng, catalog.frame["item_id"].to_numpy(), []
        if not shifted:
            pool = pool.assign(shifted_text=None)
        for q in pool.itertuples():
            g = catalog.grades(q.intent)
            relevant = np.flatnonzero(g > 0)
            if len(relevant) > MAX_JUDGED:
                relevant = relevant[np.argsort(-g[relevant] - rng.random(len(relevant)), kind="stable")[:MAX_JUDGED]]
            zeros = np.flatnonzero(g == 0)
            rows = np.concatenate([relevant, rng.choice(zeros, min(20, len(zeros)), replace=False)])
            for text in filter(None, (q.query_text, q.shifted_text)):
                frames.append(pd.DataFrame({"query_id": query_id_for(text), "query_text": text,
                                            "item_id": ids[rows], "grade": g[rows].astype(int)}))
        return pd.concat(frames, ignore_index=True)

    def truth(self, run_date: date, n_queries: int | None = None) -> tuple[datetime, Catalog, pd.DataFrame, np.ndarray, pd.DataFrame]:
        """The shop as it stands on the run date: (window start, catalog, shoppers, their tastes, query pool).
        Drawn first from the seed, so live mode (shoploop.data.live) rebuilds the same shop."""
        start = datetime.combine(run_date - timedelta(days=self.n_days), datetime.min.time())
        catalog = Catalog(self.items(start))
        users, taste = self.users(start)
        # More items, more distinct needs: the pool grows with the catalog (400 at the default 2,000).
        pool = self.query_pool(n_queries or int(np.clip(self.n_items // 5, 400, 5000)))
        return start, catalog, users, taste, pool

    def run(self, run_date: date, n_queries: int | None = None, policy: LoggingPolicy | None = None,
            first_day: int = 0) -> dict[str, pd.DataFrame]:
        """Every table of the shop on the run date; events for the window's days from ``first_day`` on."""
        start, catalog, users, taste, pool = self.truth(run_date, n_queries)
        events = (self.sessions(catalog, users, taste, pool, start, policy, first_day) if first_day < self.n_days
                  else pd.DataFrame(columns=["ts"]).astype({"ts": "datetime64[ns]"}))
        items, vocab_day = catalog.frame, self.drift_day("vocab_shift", start)
        if self.drift_day("price_shock", start) is not None:  # the landed catalog shows today's prices
            electronics = catalog.category == CATEGORIES.index("Electronics")
            items = items.assign(price=np.where(electronics, (items["price"] * 1.6).round(2), items["price"]))
        return {
            "items": items.drop(columns=["type", "type_idx", "colour", "material", "quality"]),
            "users": users[["user_id", "signup_ts", "attributes"]],
            "reviews": self.reviews(catalog, users, start), "events": events,
            # A shop's labellers grade the queries its shoppers type: a shifted form only once the
            # vocabulary shift has begun (judged before it, the model would know tomorrow's words).
            "judgments": self.judgments(catalog, pool, shifted=vocab_day is not None and vocab_day < self.n_days),
            "query_types": self.query_types(pool),
        }

    @staticmethod
    def query_types(pool: pd.DataFrame) -> pd.DataFrame:
        """The simulator's truth about each query's surface form (not part of the data contract:
        evaluation reads it to report quality per query type)."""
        forms = pd.concat([pool[["query_text", "query_type"]],
                           pool[["shifted_text", "shifted_type"]].dropna().set_axis(["query_text", "query_type"], axis=1)])
        return forms.assign(query_id=forms["query_text"].map(query_id_for)).drop_duplicates("query_id")[
            ["query_id", "query_text", "query_type"]].reset_index(drop=True)
