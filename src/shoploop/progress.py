"""What a person sees while a step runs: progress bars, and no library noise they cannot act on.

``bar``: one tqdm bar per long loop, with its rate and the time left. Bars show on a terminal only
(tqdm's ``disable=None``), so logs, Airflow tasks and CI stay free of carriage-return noise;
``SHOPLOOP_PROGRESS=1`` forces them on, ``0`` off. Each step still ends with its one summary line.

``quiet``: wrapped around the one call a known, harmless library message comes from (never a global
filter), it hides that message and nothing else; ``shoploop --verbose`` (``SHOPLOOP_VERBOSE=1``)
shows everything.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


def _disable() -> bool | None:
    forced = os.environ.get("SHOPLOOP_PROGRESS")
    return None if forced is None else forced == "0"


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A bar over ``iterable`` (or a manual one, ``.update(n)``) that disappears when done."""
    return tqdm(iterable, total=total, desc=f"  {desc:<24}", unit=unit, leave=False, dynamic_ncols=True,
                mininterval=0.5, disable=_disable())


def verbose() -> bool:
    return os.environ.get("SHOPLOOP_VERBOSE", "0") not in ("", "0")


class _Drop(logging.Filter):
    def __init__(self, pattern: re.Pattern):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


@contextmanager
def quiet(*messages: str, loggers: tuple[str, ...] = ("",), transformers_bars: bool = False) -> Iterator[None]:
    """Hide warnings and log records matching any of ``messages`` (regexes) while the block runs;
    ``transformers_bars`` also hides transformers' "Loading weights" bars."""
    if verbose():
        yield
        return
    pattern = re.compile("|".join(messages)) if messages else re.compile(r"(?!)")
    drop = _Drop(pattern)
    handlers = [handler for name in loggers for handler in logging.getLogger(name or None).handlers]
    for target in [logging.getLogger(name or None) for name in loggers] + handlers:
        target.addFilter(drop)
    bars = None
    if transformers_bars:
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for message in messages:
                warnings.filterwarnings("ignore", message=f".*(?:{message})")
            yield
    finally:
        for target in [logging.getLogger(name or None) for name in loggers] + handlers:
            target.removeFilter(drop)
        if bars:
            hf_logging.enable_progress_bar()
