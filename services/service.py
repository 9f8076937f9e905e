"""The shoploop REST service: /search, /recommend, /feedback (BentoML 1.4, class-based).

Thin by design: every answer comes from shoploop.predict; features come from the Feast online
store; feedback goes to the durable event log. Inputs are pydantic models that forbid unknown
fields, so a malformed request gets a 400 with the offending field named.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta, timezone
from typing import Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shoploop import counters, features, registry, stream
from shoploop.predict import Hit, SearchEngine
from shoploop.privacy import pseudonymise
from shoploop.settings import get_settings

MAX_K = 100
# An event's ts must be recent: a client may send what it buffered offline for up to a week, and its
# clock may run a few minutes fast; anything else (1970 from an unset clock, a year ahead) is refused.
MAX_EVENT_AGE = timedelta(days=7)
MAX_CLOCK_SKEW = timedelta(minutes=5)
logger = logging.getLogger("shoploop.service")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=512, examples=["red cast iron frying pan"])
    user_id: str | None = Field(default=None, max_length=128, examples=["u000042"])
    k: int = Field(default=10, ge=1, le=MAX_K)

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank: send the words the shopper typed")
        return value


class RecommendRequest(Strict):
    user_id: str = Field(min_length=1, max_length=128, examples=["u000042"])
    k: int = Field(default=10, ge=1, le=MAX_K)


class Event(Strict):
    event_id: str | None = Field(default=None, max_length=64)
    ts: datetime | None = None
    session_id: str = Field(min_length=1, max_length=128)
    user_id: str | None = Field(default=None, max_length=128)
    event_type: Literal["impression", "click", "add_to_cart", "purchase", "view"]
    item_id: str = Field(min_length=1, max_length=64)
    query_id: str | None = Field(default=None, max_length=64)
    query_text: str | None = Field(default=None, max_length=512)
    position: int | None = Field(default=None, ge=1, le=1000)
    surface: Literal["search", "recommend", "similar"] = "search"
    model_version: str | None = Field(default=None, max_length=128)
    price_seen: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("ts")
    @classmethod
    def recent(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        now = datetime.now(timezone.utc)
        stamped = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if not now - MAX_EVENT_AGE <= stamped <= now + MAX_CLOCK_SKEW:
            raise ValueError(f"ts {value.isoformat()} is implausible: events must be stamped within the last "
                             f"{MAX_EVENT_AGE.days} days and not in the future (omit ts to let the service stamp it)")
        return value


class FeedbackRequest(Strict):
    events: list[Event] = Field(min_length=1, max_length=1000)


class Ranking(BaseModel):
    model_version: str
    items: list[Hit]


class FeedbackAck(BaseModel):
    accepted: int
    event_ids: list[str]


@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 30}, workers=1)
class Shoploop:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.store = features.store(self.settings)
        self.lookup = features.online_lookup(self.store, self.store.get_feature_service(self.settings.feature_service))
        self.user_lookup = features.online_user_lookup(self.store, self.store.get_feature_service("recommender_v1"))
        # Real-time counters: rebuilt from the durable event log, then kept current by /feedback.
        self.counters = counters.from_log(self.settings)
        counters.push(self.store, self.counters, self.counters.items())
        self._load_champion()

    def _load_champion(self) -> None:
        version, bundle = registry.load_champion(self.settings)  # digests checked before anything is read
        # The encoder travels with the version: a reload swaps it with the ranker and the embeddings.
        engine = SearchEngine(bundle, bundle.text_encoder(), self.lookup, self.user_lookup)
        self.model_version, self.engine = version, engine  # only once all of it loaded: else the old one serves

    @bentoml.api(input_spec=SearchRequest)
    def search(self, query: str, user_id: str | None = None, k: int = 10) -> Ranking:
        """Items for a query, best first."""
        return Ranking(model_version=self.model_version, items=self.engine.search(query, k))

    @bentoml.api(input_spec=RecommendRequest)
    def recommend(self, user_id: str, k: int = 10) -> Ranking:
        """Items this shopper should see next (popular items for a shopper we do not know)."""
        user_key = pseudonymise(user_id, self.settings.user_key)
        return Ranking(model_version=self.model_version, items=self.engine.recommend(user_key, k))

    @bentoml.api(input_spec=FeedbackRequest)
    def feedback(self, events: list[Event]) -> FeedbackAck:
        """Shopper events, appended durably to the event log before the answer; the items' real-time
        counters are pushed to the online store, so the next ranking sees them."""
        written = stream.record_events(self.settings, [e.model_dump() for e in events])
        try:
            counters.push(self.store, self.counters, self.counters.add(written))
        except Exception:  # the events are durable: a restart rebuilds the counters from the log
            logger.exception("pushing real-time counters to the online store failed")
        return FeedbackAck(accepted=len(written), event_ids=written["event_id"].tolist())

    @bentoml.api(route="/admin/reload")
    def reload(self, ctx: bentoml.Context) -> dict:
        """Swap in the current champion without a restart. Needs ``Authorization: Bearer <admin token>``."""
        sent = ctx.request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.settings.admin_secret}".encode()):
            ctx.response.status_code = 401
            return {"error": "admin token missing or wrong: send 'Authorization: Bearer <token>' with the token "
                             "from SHOPLOOP_ADMIN_TOKEN or $SHOPLOOP_HOME/secrets/admin_token"}
        previous = self.model_version
        try:
            self._load_champion()
        except Exception as error:  # a version that cannot load (tampered, half-copied) never replaces one that serves
            logger.exception("reload failed; %s keeps serving", previous)
            ctx.response.status_code = 409
            return {"error": f"the champion could not be loaded ({error}); {previous} keeps serving",
                    "model_version": previous}
        return {"model_version": self.model_version, "previous": previous}
