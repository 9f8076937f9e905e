"""Property-based tests (hypothesis): text cleaning, price parsing, PII scrubbing and the event contract
hold for any input, not only the examples the other tests pick."""

from __future__ import annotations

import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shoploop.data import adapters, landing
from shoploop.data.text import clean_text, price_bound
from shoploop.warehouse.privacy import pseudonymise, scrub

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services"))

from service import FeedbackRequest  # noqa: E402

# Shop text as it arrives: words, markup, entities, CSS, odd Unicode and control characters.
FRAGMENTS = st.sampled_from(["<b>", "</b>", "<br/>", "<p>", "</p>", "<style>.a{color:red}</style>", "&amp;", "&lt;",
                             "&gt;", "&nbsp;", "&#8482;", "\u00a0", "\u200b", "\ufeff", "\t", "\n", "\r\n", "ﬁ", "Ｋ",
                             "<!-- x -->", "{", "}", ":", ";", "<", ">", "&", "#", "\x00", "\x07", "&lt;b&gt;",
                             "&amp;lt;br&amp;gt;", "&lt;style&gt;", "&lt;/style&gt;", "＜", "＞", "&#65308;", "&#0;", "style", "script", "b",
                             "br", "/", "=", "\"", "'", ".x", " ", "\u0301", "x"])
SHOP_TEXT = st.lists(st.one_of(st.text(max_size=6), FRAGMENTS, FRAGMENTS), max_size=30).map("".join)
PLAIN_WORDS = st.lists(st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True), min_size=1, max_size=8)


@settings(max_examples=2000)
@given(SHOP_TEXT)
def test_cleaned_text_is_plain_normalised_single_spaced_and_stable(raw):
    clean = clean_text(raw)
    assert clean == clean.strip() and "  " not in clean
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in clean)
    assert unicodedata.is_normalized("NFKC", clean)
    assert clean_text(clean) == clean  # cleaning twice changes nothing


@given(PLAIN_WORDS, st.sampled_from([" ", "  ", "\t", "\n", " <br> ", " <b>", "</i> "]))
def test_plain_words_survive_cleaning(words, gap):
    assert clean_text(gap.join(words)) == " ".join(words)


@given(st.decimals(min_value="0.01", max_value="999999.99", places=2))
def test_a_dollar_price_parses_to_its_value(value):
    assert adapters.parse_price(f"${value:,}")[0] == pytest.approx(float(value))
    assert adapters.parse_price(f"{value}")[0] == pytest.approx(float(value))


@given(st.decimals(min_value="0.01", max_value="9999", places=2), st.decimals(min_value="0", max_value="9999", places=2))
def test_a_price_range_keeps_its_lower_bound_and_says_so(low, extra):
    price, note = adapters.parse_price(f"${low} - ${low + extra}")
    assert price == pytest.approx(float(low)) and note == "price range, lower bound kept"


@given(st.one_of(st.text(max_size=40), st.floats(allow_nan=True), st.integers(), st.none()))
def test_price_parsing_never_raises_and_never_lands_a_non_positive_price(raw):
    price, note = adapters.parse_price(raw)
    assert price is None or price > 0
    assert price is not None or note is None or isinstance(note, str)


@given(st.decimals(min_value="0.5", max_value="99999", places=2), st.sampled_from(["under", "below", "up to", "max"]),
       st.sampled_from(["", "$", "£", "€"]))
def test_the_budget_in_a_query_is_read(value, word, currency):
    assert price_bound(f"tent {word} {currency}{value}") == pytest.approx(float(value))


EMAILS = st.emails()
PHONES = st.builds(lambda cc, groups: f"+{cc} " + " ".join(groups), st.integers(1, 99),
                   st.lists(st.from_regex(r"[0-9]{3,4}", fullmatch=True), min_size=3, max_size=4))
CARDS = st.lists(st.from_regex(r"[0-9]{4}", fullmatch=True), min_size=4, max_size=4).map(" ".join)
SHOPPING = st.lists(st.sampled_from(["tent", "red", "pan", "24cm", "gel", "pen", "0.5mm", "2 person", "under 20",
                                     "uk 10", "a5", "750ml", "for", "my", "mum"]), max_size=5).map(" ".join)


@given(SHOPPING, st.one_of(EMAILS, PHONES, CARDS), SHOPPING)
def test_personal_data_never_survives_scrubbing(before, personal, after):
    scrubbed = scrub(f"{before} {personal} {after}")
    assert personal not in scrubbed
    assert scrubbed.count("<email>") + scrubbed.count("<phone>") + scrubbed.count("<card>") >= 1
    assert scrub(scrubbed) == scrubbed


@given(SHOPPING)
def test_shopping_words_pass_scrubbing_untouched(query):
    assert scrub(query) == query


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64), st.text(min_size=16, max_size=40))
def test_pseudonyms_are_fixed_length_hex_and_keyed(a, b, key):
    pa_, pb = pseudonymise(a, key), pseudonymise(b, key)
    assert len(pa_) == 32 and int(pa_, 16) >= 0
    assert (pa_ == pb) == (a == b)
    assert pseudonymise(a, key + "x") != pa_


# --- the event contract: whatever /feedback accepts lands in the contract's shape -------------------
NOW = datetime.now(timezone.utc)
MAYBE_TEXT = st.one_of(st.none(), st.text(max_size=80), st.integers(), st.floats())
EVENT = st.fixed_dictionaries(
    {"session_id": st.one_of(st.text(min_size=1, max_size=20), st.text(max_size=130), st.integers()),
     "event_type": st.one_of(st.sampled_from(landing.EVENT_TYPES), st.sampled_from(landing.EVENT_TYPES),
                             st.text(max_size=12)),
     "item_id": st.one_of(st.text(min_size=1, max_size=20), st.text(max_size=70), st.integers())},
    optional={"event_id": MAYBE_TEXT, "user_id": MAYBE_TEXT, "query_id": MAYBE_TEXT, "query_text": MAYBE_TEXT,
              "model_version": MAYBE_TEXT,
              "ts": st.one_of(st.none(), st.datetimes(timezones=st.sampled_from([timezone.utc, None])),
                              st.datetimes(min_value=NOW.replace(tzinfo=None) - timedelta(days=6),
                                           max_value=NOW.replace(tzinfo=None)).map(lambda d: d.replace(tzinfo=timezone.utc))),
              "position": st.one_of(st.none(), st.integers(-5, 2000)),
              "surface": st.one_of(st.sampled_from(["search", "recommend", "similar"]), st.text(max_size=10)),
              "price_seen": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
              "colour": st.text(max_size=5)})


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, min_size=1, max_size=4))
def test_an_event_is_refused_with_its_field_named_or_lands_in_the_contract(tmp_path, events):
    from shoploop.features import stream
    from shoploop.settings import Settings

    try:
        request = FeedbackRequest(events=events)
    except ValidationError as error:
        for problem in error.errors():  # every refusal names the event and the field
            assert problem["loc"][0] == "events" and isinstance(problem["loc"][1], int)
        return
    for event in request.events:
        assert event.position is None or 1 <= event.position <= 1000
        assert event.price_seen is None or 0 <= event.price_seen < float("inf")
        assert event.ts is None or abs(event.ts.replace(tzinfo=event.ts.tzinfo or timezone.utc) - NOW) < timedelta(days=8)
    written = stream.record_events(Settings(home=tmp_path), [e.model_dump() for e in request.events])
    assert landing.to_table("events", written).num_rows == len(events)
    assert written["event_id"].is_unique or any(e.event_id for e in request.events)
