"""The shoploop REST service: /search, /similar, /recommend, /feedback, and the storefront page at
/shop/ (BentoML 1.4, class-based).

Thin by design: every answer comes from shoploop.serving.predict; the item features are held per worker and
the real-time counters read from the Feast online store per request (features.ServedItemFeatures);
feedback goes to the durable event log with group commit (stream.EventLog), and the first worker's
counters feeder turns it into the counters every worker reads. Inputs are pydantic models that forbid
unknown fields, so a malformed request gets a 400 with the offending field named.
"""

from __future__ import annotations

import gc
import hmac
import logging
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import bentoml
import prometheus_client
from contract import ClearErrors
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.warnings import PydanticDeprecationWarning
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from shoploop import features
from shoploop.features import stream
from shoploop.models import registry
from shoploop.models.encoder import BatchingEncoder
from shoploop.serving import interleaving
from shoploop.serving.predict import CANDIDATES, Filters, Hit, SearchEngine
from shoploop.settings import get_settings
from shoploop.warehouse.privacy import pseudonymise

MAX_K = 100
# An event's ts must be recent: a client may send what it buffered offline for up to a week, and its
# clock may run a few minutes fast; anything else (1970 from an unset clock, a year ahead) is refused.
MAX_EVENT_AGE = timedelta(days=7)
MAX_CLOCK_SKEW = timedelta(minutes=5)
# The storefront page: a shop's search box, results, "more like this" and recommendations (/shop).
STOREFRONT = Path(__file__).with_name("storefront.html")
# How often a worker asks Feast's registry whether a materialisation landed.
FEATURE_REFRESH_SECONDS = 5
logger = logging.getLogger("shoploop.service")
# What a worker swaps in and re-reads is what an operator asks first: BentoML's handlers show WARNING and
# above by default, so the service's own INFO lines (now serving X, features re-read) are let through.
logger.setLevel(logging.INFO)
# BentoML reads pydantic attributes that pydantic 2.11 deprecates (model_fields off the instance, on every
# request; __get_pydantic_core_schema__): warnings only BentoML can act on. (Feast puts its own "once" rule
# for every DeprecationWarning in front of the filters when it is imported: imported first, so this one wins.)
import feast  # noqa: E402,F401

warnings.filterwarnings("ignore", category=PydanticDeprecationWarning, module=r"_bentoml_(impl|sdk)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Narrowing(Strict):
    """Filters a shopper can apply to search and "more like this"."""

    category: str | None = Field(default=None, min_length=1, max_length=256, examples=["Kitchen > Cookware"],
                                 description="a category path or any level above it")
    brand: str | None = Field(default=None, min_length=1, max_length=128)
    # A range with its minimum above its maximum holds no item: the answer is empty, not an error.
    price_min: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    price_max: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)


class SearchRequest(Narrowing):
    query: str = Field(min_length=1, max_length=512, examples=["red cast iron frying pan"])
    user_id: str | None = Field(default=None, max_length=128, examples=["u000042"])
    k: int = Field(default=10, ge=1, le=MAX_K, strict=True)
    offset: int = Field(default=0, ge=0, le=CANDIDATES - 1, strict=True, description=f"results to skip (pages run through the "
                                                                    f"{CANDIDATES} best matches)")

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank: send the words the shopper typed")
        return value


class SimilarRequest(Narrowing):
    item_id: str = Field(min_length=1, max_length=64, examples=["p000042"])
    k: int = Field(default=10, ge=1, le=MAX_K, strict=True)


class RecommendRequest(Strict):
    user_id: str = Field(min_length=1, max_length=128, examples=["u000042"])
    k: int = Field(default=10, ge=1, le=MAX_K, strict=True)


class Event(Strict):
    event_id: str | None = Field(default=None, max_length=64)
    ts: datetime | None = None
    session_id: str = Field(min_length=1, max_length=128)
    user_id: str | None = Field(default=None, max_length=128)
    event_type: Literal["impression", "click", "add_to_cart", "purchase", "view"]
    item_id: str = Field(min_length=1, max_length=64)
    query_id: str | None = Field(default=None, max_length=64)
    query_text: str | None = Field(default=None, max_length=512)
    position: int | None = Field(default=None, ge=1, le=1000, strict=True)
    surface: Literal["search", "recommend", "similar"] = "search"
    model_version: str | None = Field(default=None, max_length=128)
    price_seen: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)

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
    # Not nullable: BentoML's OpenAPI drops the null of a top-level optional field, so clients (and
    # schemathesis) would read a null as off-schema.
    next_offset: int = Field(default=0, ge=0, description="offset of the next page; 0 when this is the last one")


class FeedbackAck(BaseModel):
    accepted: int
    event_ids: list[str]


def _interleaved(champion, challenger, query: str, k: int, offset: int, narrowed: Filters, user_id) -> list[Hit]:
    """The page of one team-draft interleaving of the two models' rankings, each hit naming its model."""
    teams = (champion, challenger)
    ranked = [engine.search_rows(query, CANDIDATES, 0, narrowed) for _, engine in teams]
    ids = [[engine.item_ids[r] for r in rows] for (_, engine), (rows, _) in zip(teams, ranked)]
    drafted = interleaving.team_draft(ids[0], ids[1], offset + k, interleaving.seed_of(query, user_id, narrowed))
    place = [{item: at for at, item in enumerate(ranking)} for ranking in ids]
    hits = []
    for item, team in drafted[offset:]:  # hits made for the page only, each from the ranking that placed it
        (tag, engine), (rows, scores), at = teams[team], ranked[team], place[team][item]
        hit = engine.hits(rows[at:at + 1], scores[at:at + 1])[0]
        hit.model_version = tag
        hits.append(hit)
    return hits


def _settle_heap() -> None:
    """Keep the loaded model out of the garbage collector's full passes (gc.freeze): a worker tracks over
    half a million objects once a version is loaded (catalog, indexes, the encoder's session, Feast's
    registry), and a full collection walked them all, about 0.15-0.6 s with every request thread stopped,
    whenever requests' short-lived objects triggered one: the tail of /search under load. Once per load:
    what the last load froze is released first, so the version just replaced is collected now."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


storefront = Starlette(routes=[Route("/", lambda request: HTMLResponse(STOREFRONT.read_text()))])


# threads: requests a worker serves at once (BentoML's default is one): waits on the online store and
# on the event log's fsync overlap, and concurrent /feedback batches share one commit.
# Searches answered, by serving version and whether any item came back: the monitor reads the
# zero-result rate from /metrics (Prometheus; BentoML adds every worker's counts up).
# (prometheus_client directly, as BentoML now asks: its bentoml.metrics wrapper is deprecated.)
SEARCHES = prometheus_client.Counter("shoploop_searches", "searches answered, by model version and outcome",
                                     ["model_version", "outcome"])
# Request-latency buckets fine enough for a search that takes milliseconds (BentoML's start at 5 ms).
LATENCY_BUCKETS = [0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]


# workers: processes, each with the model (SHOPLOOP_SERVICE_WORKERS; they share the counters through the
# online store and the event log through the landing zone).
@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 30}, workers=get_settings().service_workers, threads=8,
                 metrics={"enabled": True, "duration": {"buckets": LATENCY_BUCKETS}})
@bentoml.asgi_app(storefront, path="/shop")
class Shoploop:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.store = features.store(self.settings)
        self.user_lookup = features.online_user_lookup(self.store, self.store.get_feature_service("recommender_v1"))
        # The embedded log commits in groups (concurrent batches share a write and its fsync); on Redis,
        # one XADD a request (SHOPLOOP_EVENT_STREAM).
        self.log = stream.open_log(self.settings)
        # The stream's consumers run in the first worker (None: the class instantiated outside a server):
        # the real-time counters' feeder counts what every worker commits and pushes the counts to the
        # online store, where every worker reads them per request; on Redis, also the landing consumer.
        if bentoml.server_context.worker_index in (None, 1):
            self.feeder = stream.start_consumers(self.settings, self.store)
        self._loading = threading.Lock()  # one load at a time: a reload request and the registry follower
        self._load_champion()
        threading.Thread(target=self._follow, name="follow-registry", daemon=True).start()

    def _engine(self, bundle) -> SearchEngine:
        # The encoder travels with the version: a reload swaps it with the ranker and the embeddings; the
        # item features are held for the version's catalog.
        service = self.store.get_feature_service(self.settings.feature_service)
        item_features = features.ServedItemFeatures(self.store, service, bundle.catalog["item_id"].tolist())
        # Concurrent requests' queries share the encoder's passes (adaptive batching; a lone one waits for nothing).
        return SearchEngine(bundle, BatchingEncoder(bundle.text_encoder()), item_features, self.user_lookup)

    def _challenger_tag(self) -> str | None:
        """The version shoppers are evaluating against the champion (interleaved into a share of searches)."""
        rival = registry.challenger(self.settings)
        active = rival and rival["tag"] != rival["champion"] and self.settings.interleave_share > 0
        return rival["tag"] if active and not self.settings.model_tag else None

    def _load_champion(self) -> None:
        version, bundle = registry.load_champion(self.settings)  # digests checked before anything is read
        engine, challenger = self._engine(bundle), None
        rival = self._challenger_tag()
        if rival:
            challenger = (rival, self._engine(registry.load_version(self.settings, rival)))
        # only once all of it loaded: else the old ones serve
        self.model_version, self.engine, self.challenger = version, engine, challenger
        _settle_heap()

    def _follow(self) -> None:
        """Every few seconds: read the snapshot features again once a new materialisation landed, and swap
        in a new champion (/admin/reload reaches one worker of several, and one replica of several; the
        others follow the registry here). A version that fails to load is not tried again."""
        refused = None
        while True:
            time.sleep(FEATURE_REFRESH_SECONDS)
            try:
                if self.engine.item_features.refresh():
                    logger.info("item features re-read: a new materialisation landed")
            except Exception:  # the features held keep serving; the next check tries again
                logger.exception("re-reading item features after a materialisation failed")
            tag = None
            try:
                tag = (registry.load_champion_tag(self.settings), self._challenger_tag())
                if tag not in (self._serving(), refused):
                    with self._loading:
                        if tag != self._serving():
                            self._load_champion()
                    logger.info("now serving %s, the registry's champion%s", self.model_version,
                                f", with {tag[1]} interleaved into a share of searches" if tag[1] else "")
            except Exception:
                refused = tag
                logger.exception("the champion %s could not be loaded; %s keeps serving", tag, self.model_version)

    def _serving(self) -> tuple[str, str | None]:
        return self.model_version, self.challenger and self.challenger[0]

    @bentoml.api(input_spec=SearchRequest)
    def search(self, query: str, user_id: str | None = None, k: int = 10, offset: int = 0, category: str | None = None,
               brand: str | None = None, price_min: float | None = None, price_max: float | None = None) -> Ranking:
        """Items for a query, best first, within the filters given; ``offset`` pages through the results."""
        model_version, engine, challenger = self.model_version, self.engine, self.challenger
        narrowed = Filters(category, brand, price_min, price_max)
        if challenger and interleaving.chosen(self.settings.interleave_share, query, user_id, narrowed):
            hits = _interleaved((model_version, engine), challenger, query, k, offset, narrowed, user_id)
        else:
            hits = engine.search(query, k, offset, narrowed)
        if offset == 0:  # a search, not the next page of one
            SEARCHES.labels(model_version=model_version, outcome="results" if hits else "zero_results").inc()
        more = len(hits) == k and offset + k < CANDIDATES
        return Ranking(model_version=model_version, items=hits, next_offset=offset + k if more else 0)

    @bentoml.api(input_spec=SimilarRequest)
    def similar(self, item_id: str, k: int = 10, category: str | None = None,
                brand: str | None = None, price_min: float | None = None, price_max: float | None = None) -> Ranking:
        """More like this: the items most like the given one, within the filters given."""
        model_version, engine = self.model_version, self.engine
        hits = engine.similar(item_id, k, Filters(category, brand, price_min, price_max))
        if hits is None:
            return JSONResponse({"error": f"item_id {item_id!r} is not in the catalog {model_version} serves"},
                                status_code=404)
        return Ranking(model_version=model_version, items=hits)

    @bentoml.api(input_spec=RecommendRequest)
    def recommend(self, user_id: str, k: int = 10) -> Ranking:
        """Items this shopper should see next (popular items for a shopper we do not know)."""
        user_key = pseudonymise(user_id, self.settings.user_key)
        return Ranking(model_version=self.model_version, items=self.engine.recommend(user_key, k))

    @bentoml.api(input_spec=FeedbackRequest)
    def feedback(self, events: list[Event]) -> FeedbackAck:
        """Shopper events, appended durably to the event log before the answer; the counters' feeder
        reads them from the log and the items' real-time counters reach the online store within a
        fraction of a second."""
        try:
            written = self.log.record([e.model_dump() for e in events])  # their event ids
        except Exception as error:  # the log or Redis is unavailable: nothing acknowledged, the client retries
            logger.exception("recording %d events failed", len(events))
            return JSONResponse({"error": f"the events were not recorded ({type(error).__name__}): send them again, "
                                          "with the same event_id, in a moment"}, status_code=503)
        return FeedbackAck(accepted=len(written), event_ids=written)

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
            with self._loading:
                self._load_champion()
        except Exception as error:  # a version that cannot load (tampered, half-copied) never replaces one that serves
            logger.exception("reload failed; %s keeps serving", previous)
            ctx.response.status_code = 409
            return {"error": f"the champion could not be loaded ({error}); {previous} keeps serving",
                    "model_version": previous}
        return {"model_version": self.model_version, "previous": previous}


Shoploop.add_asgi_middleware(ClearErrors)
