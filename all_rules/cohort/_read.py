"""Reading cohort files (CSV, JSON Lines, Parquet) as chunks of raw rows, within bounds.

A file that cannot be read at all raises ``CohortInputError`` (exit 2). A row that cannot
be read — a JSON Lines row over ``MAX_ROW_BYTES`` or nested too deep, a CSV cell over the
csv module's field limit, a CSV line over ``MAX_ROW_BYTES``, bytes that are not UTF-8 —
becomes one ``BadRow``, reported as one error row; the run goes on with the next row.
"""

from __future__ import annotations

import csv
import itertools
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
from pydantic import ValidationError

from all_rules.engine._guideline import field_errors
from all_rules.engine._input import excerpt
from all_rules.exceptions import AllRulesError, FieldError
from all_rules.facts import PatientFacts

from ._records import record_to_facts, unknown_columns

FORMATS = ("csv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
               ".parquet": "parquet", ".pq": "parquet"}
CHUNK_ROWS = 1000
MAX_ROW_BYTES = 2**20
"""The longest JSON Lines row, or physical CSV line, read (1 MiB; a patient is ~1 KB)."""
CSV_FIELD_LIMIT = csv.field_size_limit()
"""The longest CSV cell (the csv module's limit, 131,072 characters, left as it is)."""


class CohortInputError(AllRulesError):
    """The cohort input cannot be read at all (exit 2); bad rows are not this."""


def pyarrow_module() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CohortInputError("Parquet needs pyarrow: pip install 'all-rules[cohort]'") from None
    return pyarrow


def format_of(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise CohortInputError(f"{path}: cannot tell the format from the extension "
                               f"{excerpt(path.suffix)}; use .csv, .jsonl or .parquet, or "
                               "give --input-format / --output-format")
    return fmt


@attrs.frozen
class BadRow:
    """A row that could not be read; ``problem`` says why (without its content)."""

    problem: str


@attrs.frozen
class RefusedRow:
    """A row refused as a whole: its errors are complete, and only its id is kept."""

    patient_id: str | None


Chunk = tuple[int, str, list[Any]]
"""(first row number, input format, raw items)."""


def _chunks(items: Iterator[Any], fmt: str, size: int) -> Iterator[Chunk]:
    row, batch = 1, []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield row, fmt, batch
            row, batch = row + len(batch), []
    if batch:
        yield row, fmt, batch


def _too_long(handle: IO[Any], empty: Any) -> None:
    """Skip the rest of an overlong physical line."""
    while True:
        rest = handle.readline(MAX_ROW_BYTES)
        if rest == empty or rest.endswith("\n" if isinstance(rest, str) else b"\n"):
            return


def _jsonl_lines(path: Path) -> Iterator[bytes | BadRow]:
    with path.open("rb") as handle:
        seen = False
        while line := handle.readline(MAX_ROW_BYTES + 1):
            seen = True
            if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
                _too_long(handle, b"")
                yield BadRow(f"longer than {MAX_ROW_BYTES:,} bytes")
            elif line.strip():
                yield line
        if not seen:
            raise CohortInputError(f"{path}: the file is empty")


class _LineTooLongError(Exception):
    pass


class _Lines:
    """A text file's lines for csv.reader, each at most ``MAX_ROW_BYTES`` characters, with a
    count of the quote characters read since ``mark``: after a csv error, an odd count means
    the broken record is inside a quoted cell, which ``resync`` skips to its end."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.quotes = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.handle.readline(MAX_ROW_BYTES + 1)
        if not line:
            raise StopIteration
        if len(line) > MAX_ROW_BYTES and not line.endswith("\n"):
            _too_long(self.handle, "")
            raise _LineTooLongError
        self.quotes += line.count('"')
        return line

    def mark(self) -> None:
        self.quotes = 0

    def resync(self) -> None:
        while self.quotes % 2:
            line = self.handle.readline(MAX_ROW_BYTES + 1)
            if not line:
                return
            self.quotes += line.count('"')


def _csv_rows(path: Path) -> Iterator[dict[str, str] | BadRow]:
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
        except (csv.Error, _LineTooLongError):
            raise CohortInputError(f"{path}: the header row cannot be read") from None
        if header is None:
            raise CohortInputError(f"{path}: the file is empty (no header row)")
        problems = unknown_columns(header)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        problems += [f"duplicate column {excerpt(name)}" for name in duplicated]
        if problems:
            raise CohortInputError(f"{path}: " + "; ".join(problems))
        while True:
            lines.mark()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except _LineTooLongError:
                yield BadRow(f"a line longer than {MAX_ROW_BYTES:,} characters")
                continue
            except csv.Error as error:
                lines.resync()
                yield BadRow(f"cannot be read as CSV ({error})")
                continue
            if not cells:
                continue
            if len(cells) != len(header):
                yield BadRow(f"has {len(cells)} cells, the header has {len(header)}")
                continue
            yield dict(zip(header, cells, strict=True))


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    pq = pyarrow_module().parquet
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        raise CohortInputError(f"{path}: not a readable Parquet file ({error})") from None
    problems = unknown_columns(parquet.schema_arrow.names)
    if problems:
        raise CohortInputError(f"{path}: " + "; ".join(problems))
    try:
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield from batch.to_pylist()
    except Exception as error:
        raise CohortInputError(f"{path}: Parquet data is damaged ({error})") from None


def read_chunks(path: Path, fmt: str, size: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The input as chunks of raw rows; raises CohortInputError if it cannot be read.

    JSON Lines and CSV may come from a pipe (a named pipe, ``/dev/stdin``, a shell's
    ``<(zcat cohort.jsonl.gz)``), read once in order; Parquet needs a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CohortInputError(f"{path}: no such file") from None
    except OSError as error:
        raise CohortInputError(f"{path}: cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise CohortInputError(f"{path}: is a directory, not an input file")
    if not stat.S_ISREG(mode) and fmt == "parquet":
        raise CohortInputError(f"{path}: Parquet input must be a regular file (it is read by "
                               "seeking), not a pipe or a device")
    readers: dict[str, Callable[[Path], Iterator[Any]]] = {
        "jsonl": _jsonl_lines, "csv": _csv_rows, "parquet": _parquet_rows}
    return _chunks(readers[fmt](path), fmt, size)


def read_nonempty_chunks(path: Path, fmt: str) -> Iterator[Chunk]:
    """``read_chunks``, with the first chunk read now: unreadable or empty input fails here
    (CohortInputError), before a run creates any output."""
    chunks = read_chunks(path, fmt)
    first = next(chunks, None)
    if first is None:
        raise CohortInputError(f"{path}: no patient rows")
    return itertools.chain((first,), chunks)


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows in the input, for the progress bar (None when it would cost a second read)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:
            return None
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(0, lines - (1 if fmt == "csv" else 0))


def _jsonl_patient_id(line: bytes) -> str | None:
    """A refused JSON Lines row's patient id, if it has a plain one (for its error row)."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    value = data.get("patient_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= 200 else None


def facts_of(fmt: str, item: Any) -> tuple[Any, list[FieldError]]:
    """One raw row as facts (a PatientFacts, a mapping, or a RefusedRow) and its errors."""
    if isinstance(item, BadRow):
        return RefusedRow(None), [FieldError("(row)", item.problem)]
    if fmt == "jsonl":
        try:
            return PatientFacts.model_validate_json(item), []
        except ValidationError as error:
            return RefusedRow(_jsonl_patient_id(item)), field_errors(error)
    if fmt == "csv":
        bad = [name for name, value in item.items()
               if any("\udc80" <= ch <= "\udcff" for ch in value)]
        if bad:
            facts, errors = record_to_facts({k: v for k, v in item.items() if k not in bad})
            return facts, [FieldError(name, "not UTF-8 text") for name in bad] + errors
    return record_to_facts(item)
