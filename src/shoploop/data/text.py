"""Cleaning of shop text: HTML and CSS out, entities decoded, Unicode and whitespace normalised.

Real catalogs paste markup into descriptions (Amazon's Office Products carry whole ``<style>``
blocks and A+ content CSS). The same function runs inside DuckDB while dbt builds staging (a UDF
the dbt-duckdb plugin registers) and anywhere Python needs it.
"""

from __future__ import annotations

import html
import re
import unicodedata

_BLOCKS = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?(?:-->|$)", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"</?[a-zA-Z][^<>]*>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/h\d)\s*/?>", re.IGNORECASE)
# A CSS rule left as text: ".headerM {color:#000;...}" or "#aloha{...}".
_CSS_RULES = re.compile(r"[.#@]?[\w\-.#:, >*\[\]=\"']*\{[^{}]*:[^{}]*\}")
_SPACE = re.compile(r"\s+")


def _decode(text: str) -> str:
    """Entities and compatibility forms decoded until nothing changes: a catalog that escaped its markup
    once or twice ("&amp;lt;br&amp;gt;", full-width "＜b＞") shows tags only after this."""
    for _ in range(4):
        decoded = unicodedata.normalize("NFKC", html.unescape(text))
        if decoded == text:
            break
        text = decoded
    return text


def clean_text(text: str | None) -> str | None:
    """Plain, NFKC-normalised, single-spaced text; None stays None. Cleaning twice changes nothing."""
    if text is None:
        return None
    text = _decode(text)
    text = _BLOCKS.sub(" ", text)
    text = _BREAKS.sub(" ", text)
    for _ in range(8):  # "<a<b>>": removing the inner tag leaves an outer one
        stripped = _TAGS.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _CSS_RULES.sub(" ", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


_BUDGET = re.compile(r"\b(?:under|below|less than|up to|max|cheaper than)\s*[$£€]?\s*(\d+(?:[.,]\d+)?)\b", re.IGNORECASE)


def price_bound(query: str) -> float | None:
    """The most a shopper says they will pay ("under 40", "below $25", "up to 12.50"), else None."""
    match = _BUDGET.search(query)
    return float(match.group(1).replace(",", ".")) if match else None
