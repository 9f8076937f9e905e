"""The shoploop REST service: /search, /recommend, /feedback (BentoML 1.4, class-based).

Thin by design: every answer comes from shoploop.predict; features come from the Feast online
store; feedback goes to the durable event log. Inputs are pydantic models that forbid unknown
fields, so a malformed request gets a 400 with the offending field named.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shoploop import features, registry, stream
from shoploop.models.encoder import TextEncoder
from shoploop.predict import Hit, SearchEngine
from shoploop.privacy import pseudonymise
from shoploop.settings import get_settings

MAX_K = 100


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
    price_seen: float | None = Field(default=None, ge=0)


class FeedbackRequest(Strict):
    events: list[Event] = Field(min_length=1, max_length=1000)


class Item(BaseModel):
    item_id: str
    score: float
    title: str
    brand: str
    category_path: str
    price: float


class Ranking(BaseModel):
    model_version: str
    items: list[Item]


class FeedbackAck(BaseModel):
    accepted: int
    event_ids: list[str]


def _items(hits: list[Hit]) -> list[Item]:
    return [Item(**hit.__dict__) for hit in hits]


@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 30}, workers=1)
class Shoploop:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.model_version, bundle = registry.load_champion(self.settings)
        store = features.store(self.settings)
        service = store.get_feature_service(self.settings.feature_service)
        self.engine = SearchEngine(bundle, TextEncoder(), features.online_lookup(store, service))

    @bentoml.api(input_spec=SearchRequest)
    def search(self, query: str, user_id: str | None = None, k: int = 10) -> Ranking:
        """Items for a query, best first."""
        return Ranking(model_version=self.model_version, items=_items(self.engine.search(query, k)))

    @bentoml.api(input_spec=RecommendRequest)
    def recommend(self, user_id: str, k: int = 10) -> Ranking:
        """Items this shopper should see next (popular items for a shopper we do not know)."""
        user_key = pseudonymise(user_id, self.settings.user_key)
        return Ranking(model_version=self.model_version, items=_items(self.engine.recommend(user_key, k)))

    @bentoml.api(input_spec=FeedbackRequest)
    def feedback(self, events: list[Event]) -> FeedbackAck:
        """Shopper events, appended durably to the event log before the answer."""
        ids = stream.record_events(self.settings, [e.model_dump() for e in events])
        return FeedbackAck(accepted=len(ids), event_ids=ids)
