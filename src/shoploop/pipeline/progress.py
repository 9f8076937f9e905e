"""What a person sees while a step runs: progress bars, and no library noise they cannot act on.

``bar``: one tqdm bar per long loop, with its rate and the time left. On a terminal it is a bar; off
one (a log file, an Airflow task's log, CI) the same progress is a plain line at most every 30 s, so
a person reading a log still sees how far a long step is and how long it has left, without
carriage-return noise. ``SHOPLOOP_PROGRESS=0`` turns both off. Each step ends with its one summary line.

``quiet``: wrapped around the one call a known, harmless library message comes from (never a global
filter), it hides that message and nothing else; ``shoploop --verbose`` (``SHOPLOOP_VERBOSE=1``)
shows everything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

LINE_EVERY_S = 30.0


class _Lines(tqdm):
    """Off a terminal: the bar's progress as one plain line at most every ``LINE_EVERY_S``."""

    # No monitor thread forcing a line between two updates (and none another bar started may force one:
    # maxinterval never passes): a line comes with progress, at most every LINE_EVERY_S.
    monitor_interval = 0

    def display(self, msg=None, pos=None):
        if msg == "":  # a closing bar clearing itself: nothing was drawn to clear
            return False
        self.fp.write(f"{msg or self.line()}\n")
        self.fp.flush()
        return True

    def line(self) -> str:
        unit = self.unit[:-1] + "ies" if self.unit.endswith("y") else self.unit + ("es" if self.unit.endswith("ch") else "s")
        if not self.n:  # nothing measured yet: say what is ahead
            return f"{self.desc}: {self.total:,} {unit} to go" if self.total else f"{self.desc}: started"
        elapsed = self.format_dict["elapsed"]
        rate = self.n / elapsed if elapsed else 0.0
        done = f"{self.n:,}/{self.total:,} {unit} ({self.n / self.total:.0%})" if self.total else f"{self.n:,} {unit}"
        left = f", about {self.format_interval((self.total - self.n) / rate)} left" if self.total and rate else ""
        speed = f"{rate:.2f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s per {self.unit}" if rate else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}, {self.format_interval(elapsed)} so far{left}, {speed}{postfix}"


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A bar over ``iterable`` (or a manual one, ``.update(n)``) that disappears when done."""
    if os.environ.get("SHOPLOOP_PROGRESS") == "0":
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty() or os.environ.get("SHOPLOOP_PROGRESS") == "1":
        return tqdm(iterable, total=total, desc=f"  {desc:<24}", unit=unit, leave=False, dynamic_ncols=True,
                    mininterval=0.5)
    return _Lines(iterable, total=total, desc=f"  {desc}", unit=unit, leave=False, mininterval=LINE_EVERY_S,
                  maxinterval=float("inf"), file=sys.stderr)


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
