"""Personal data rules: user ids become keyed hashes before any mart or feature store sees them.

The same function runs in two places: inside DuckDB while dbt builds the staging models (through
the dbt-duckdb plugin in ``shoploop.warehouse``, so the key never appears in compiled SQL or dbt
logs) and in the request path, so a live user id finds its features.
"""

from __future__ import annotations

import hashlib
import hmac

KEY_ENV = "SHOPLOOP_PSEUDONYM_KEY"


def pseudonymise(user_id: str | None, key: str) -> str | None:
    """HMAC-SHA256 of the user id, hex, cut to 32 characters (128 bits: no collisions at shop scale)."""
    if user_id is None:
        return None
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]
