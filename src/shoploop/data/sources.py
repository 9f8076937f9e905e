"""Reading a source file's bytes safely, for the adapters: gzip, zip and zstd streams (a file cut
short raises, never ends quietly), lines read in bounded pieces (a line over MAX_LINE_BYTES is never
held whole), and ``MalformedSource``: the one-line error that names the file and its fault.
"""

from __future__ import annotations

import contextvars
import gzip
import io
import zipfile
from pathlib import Path

import pandas as pd

# No real record is this long: a longer line is a broken file (a lost newline, a binary blob) and
# is never read whole; in JSON lines it is quarantined, in a table it stops the landing with one line.
MAX_LINE_BYTES = 16 * 2**20


class MalformedSource(ValueError):
    """A source file that cannot be read as its format; the message is one line naming file and fault."""


_READING: contextvars.ContextVar[Path | None] = contextvars.ContextVar("reading", default=None)


def _reading(file: Path) -> Path:
    """Note the file an adapter is about to read, so a failure names it."""
    _READING.set(file)
    return file


class _ZstdReader(io.RawIOBase):
    """A .zst file, decompressed as it is read; a file cut short raises EOFError (zstandard's own
    stream reader ends quietly on a truncated frame)."""

    def __init__(self, file: Path):
        import zstandard

        self._source, self._inflate, self._pending = file.open("rb"), zstandard.ZstdDecompressor().decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._source.read(2**20)
            if not chunk:
                if not self._inflate.eof:
                    raise EOFError("zstd frame cut short")
                return 0
            if self._inflate.eof:  # another frame follows
                import zstandard

                self._inflate = zstandard.ZstdDecompressor().decompressobj()
            self._pending = self._inflate.decompress(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n

    def close(self) -> None:
        self._source.close()
        super().close()


def _open_binary(file: Path):
    if file.suffix == ".gz":
        return gzip.open(file, "rb")
    if file.suffix == ".zst":
        return io.BufferedReader(_ZstdReader(file))
    if file.suffix == ".zip":
        archive = zipfile.ZipFile(file)
        return archive.open(archive.namelist()[0])
    return file.open("rb")


def _lines(fh):
    """(line number, bytes) of a binary stream, with None for a line over MAX_LINE_BYTES (skipped in
    bounded pieces, never held whole)."""
    n = 0
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = fh.readline(MAX_LINE_BYTES + 1)
            yield n, None
        else:
            yield n, line


def _require(frame: pd.DataFrame, columns: set[str], file: Path) -> pd.DataFrame:
    missing = columns - set(frame.columns)
    if missing:
        raise MalformedSource(f"{file}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def _check_line_lengths(file: Path) -> Path:
    """Refuse a table file with a line over MAX_LINE_BYTES before a parser tries to hold it."""
    with _open_binary(file) as fh:
        for n, line in _lines(fh):
            if line is None:
                raise MalformedSource(f"{file}: line {n} is longer than {MAX_LINE_BYTES // 2**20} MiB "
                                      "(a lost newline or a binary blob?); fix or drop that record")
    return file
