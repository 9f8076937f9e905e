"""Personal data rules: user ids become keyed hashes before any mart or feature store sees them.

The same function runs in two places: inside DuckDB while dbt builds the staging models (through
the dbt-duckdb plugin in ``shoploop.warehouse``, so the key never appears in compiled SQL or dbt
logs) and in the request path, so a live user id finds its features.
"""

from __future__ import annotations

import hashlib
import hmac
import re

KEY_ENV = "SHOPLOOP_PSEUDONYM_KEY"


def pseudonymise(user_id: str | None, key: str) -> str | None:
    """HMAC-SHA256 of the user id, hex, cut to 32 characters (128 bits: no collisions at shop scale)."""
    if user_id is None:
        return None
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


# Personal data shoppers paste into a search box. Card-like: 13-19 digits, optionally grouped.
# The local part takes every character RFC 5322 allows unquoted (a shopper's "j*smith@..." is an email too).
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(r"(?<![\w])\+?\d[\d ()./-]{6,}\d\b")


def scrub(text: str | None) -> str | None:
    """Replace emails, card-like numbers and phone numbers with placeholders before a query is logged."""
    if text is None:
        return None
    text = _EMAIL.sub("<email>", text)
    text = _CARD.sub("<card>", text)
    return _PHONE.sub("<phone>", text)
