"""Progress a person can watch: one tqdm bar per long loop, with its rate and the time left.

Bars show on a terminal only (tqdm's ``disable=None``), so logs, Airflow tasks and CI stay free of
carriage-return noise; ``SHOPLOOP_PROGRESS=1`` forces them on, ``0`` off. Each step still ends with
its one summary line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm


def _disable() -> bool | None:
    forced = os.environ.get("SHOPLOOP_PROGRESS")
    return None if forced is None else forced == "0"


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A bar over ``iterable`` (or a manual one, ``.update(n)``) that disappears when done."""
    return tqdm(iterable, total=total, desc=f"  {desc:<24}", unit=unit, leave=False, dynamic_ncols=True,
                mininterval=0.5, disable=_disable())
