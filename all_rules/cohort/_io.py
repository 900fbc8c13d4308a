"""Cohort files: the runner, its writer and the safety of its outputs (readers: ``_read``).

The runner reads the input in chunks, assesses each chunk (in this process or in worker
processes), and writes the results in input order. Output goes to a temporary file beside
the target, renamed into place at the end: a failed run leaves nothing half-written, and an
interrupted run (Ctrl-C) leaves a valid file truncated after the last complete chunk.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import itertools
import os
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import attrs

from all_rules.engine._guideline import Guideline, validate_facts
from all_rules.exceptions import EvaluationError, FieldError, InvalidFactsError
from all_rules.facts import PatientFacts
from all_rules.output import Assessment

from ._guard import RunLock, guard_worker, remove_abandoned
from ._many import (
    PATIENT_COLUMNS,
    RECOMMENDATION_COLUMNS,
    CohortSummary,
    RowError,
    assess_row,
    table_rows,
)
from ._read import (
    Chunk,
    CohortInputError,
    facts_of,
    format_of,
    read_nonempty_chunks,
)
from ._read import pyarrow_module as _pyarrow

__all__ = ["ChunkResult", "CohortRun", "GuidelineSpec", "check_outputs", "map_chunks",
           "output_paths", "run_cohort", "stderr_is_terminal"]
_R = TypeVar("_R")


def output_paths(out: Path, fmt: str) -> list[Path]:
    """Every file a run writing ``out`` as ``fmt`` creates: its tables, then their
    temporaries (``.<name>.partial`` beside each)."""
    if fmt == "jsonl":
        targets = [out]
    else:
        stem = out.with_suffix("")
        targets = [Path(f"{stem}.patients.{fmt}"), Path(f"{stem}.recommendations.{fmt}")]
    return targets + [t.with_name(f".{t.name}.partial") for t in targets]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()  # follows symbolic links
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_outputs(input_path: Path, outputs: Iterable[Path]) -> None:
    """Refuse a run before anything is written (CohortInputError, exit 2) when an output
    would overwrite the input — the same file by name, symbolic link or hard link — is a
    directory, or is the same file as another output.

    Every command that reads a cohort and writes files checks all its outputs here in one
    call (``output_paths`` of the main output, plus ``--summary`` and any other file)."""
    source = _identity(input_path)
    seen: dict[object, Path] = {}
    for path in outputs:
        if path.is_dir():
            raise CohortInputError(f"{path}: is a directory; give a file name")
        identity = _identity(path)
        if identity is not None and identity == source:
            raise CohortInputError(f"{path}: is the input file {input_path} (by name or "
                                   "link); writing it would destroy the input")
        key = identity or path.resolve()
        if key in seen:
            raise CohortInputError(f"{path}: is the same file as the output {seen[key]}")
        seen[key] = path

@attrs.frozen
class GuidelineSpec:
    """How a worker process rebuilds the caller's guideline."""

    rules: str | None = None
    overlay: str | None = None
    parameters: tuple[tuple[str, float], ...] = ()
    unsafe: tuple[tuple[str, Any, Any], ...] = ()
    """Unsafe overrides: name, value and the reason stated for it (checked on ``load``)."""

    def load(self) -> Guideline:
        if self.rules is None and self.overlay is None and not self.parameters \
                and not self.unsafe:
            return Guideline.default()
        return Guideline.load(self.rules, parameters=dict(self.parameters),
                              overlay=self.overlay, unsafe_overrides={
                                  name: {"value": value, "reason": reason}
                                  for name, value, reason in self.unsafe})


# --- assessing a chunk (in any process) ----------------------------------------------------

_worker_guideline: Guideline | None = None
_worker_spool: _Spool | None = None
_spool_numbers = itertools.count(1)


@attrs.frozen
class ChunkResult:
    first_row: int
    jsonl: bytes
    """UTF-8, encoded in the worker; empty when the bytes were spooled (``spooled``)."""
    patients: list[tuple[Any, ...]]
    recommendations: list[tuple[Any, ...]]
    summary: CohortSummary
    spooled: Spooled | None = None


@attrs.frozen
class Spooled:
    """Where a worker wrote a chunk's JSON Lines, for the parent to copy into the output."""

    path: str
    offset: int
    length: int
    retired: str | None
    """A spool file of the same worker that no later chunk uses (the parent deletes it)."""


class _Spool:
    """A worker's append-only spool files beside the output.

    JSON Lines output is ~4 KB per patient; sending it through the pool's pipe costs a
    pickle, two pipe copies and an unpickle, and the parent's CPU is shared with the
    workers. A worker appends each chunk to its spool and sends only (path, offset,
    length); the parent copies the range into the output in the kernel
    (``os.copy_file_range``). A spool is retired past ``LIMIT`` bytes, so the disk used
    beyond the output stays bounded; the parent deletes every spool when the run ends.
    """

    LIMIT = 256 * 2**20

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.path = ""
        self.fd = -1
        self.size = 0

    def write(self, data: bytes) -> Spooled:
        retired = None
        if self.fd < 0 or self.size >= self.LIMIT:
            if self.fd >= 0:
                os.close(self.fd)
                retired = self.path
            self.path = f"{self.prefix}{os.getpid()}-{next(_spool_numbers)}"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self.size = 0
        offset = self.size
        self.size += _write_all(self.fd, data)
        return Spooled(self.path, offset, len(data), retired)


def spool_prefix(out: Path) -> str:
    """The path prefix of the spool files of a run writing ``out``."""
    return str(out.with_name(f".{out.name}.spool-"))


def assess_chunk(chunk: Chunk, tables: bool, guideline: Guideline | None = None,
                 evaluate: bool = True) -> ChunkResult:
    """Assess one chunk; the same function runs in-process and in workers.

    ``evaluate=False`` only reads and validates (the I/O floor the benchmark measures): each
    valid row is written back as its validated facts."""
    guideline = guideline or _worker_guideline
    assert guideline is not None
    first_row, fmt, items = chunk
    summary = CohortSummary()
    lines: list[str] = []
    patients: list[tuple[Any, ...]] = []
    recommendations: list[tuple[Any, ...]] = []
    for offset, item in enumerate(items):
        row = first_row + offset
        facts, errors = facts_of(fmt, item)
        if not evaluate:
            if not errors and not isinstance(facts, PatientFacts):
                try:
                    facts = validate_facts(facts)
                except InvalidFactsError as error:
                    errors = list(error.errors)
            summary.patients += 1
            if errors:
                summary.invalid += 1
                lines.append(RowError.of(row, None, "invalid", errors).to_json())
            else:
                lines.append(facts.model_dump_json(exclude_none=True))
            continue
        if not tables and not errors and isinstance(facts, PatientFacts):
            # The fast path: JSON written straight from the selection (held byte-identical
            # to the models' JSON by tests/engine/test_properties.py).
            try:
                text, selection = guideline._json_and_selection_checked(facts)
            except EvaluationError as error:
                engine_error = RowError.of(row, facts.patient_id, "engine",
                                           [FieldError("(engine)", str(error))])
                summary.add(engine_error)
                lines.append(engine_error.to_json())
                continue
            summary.add_selection(selection)
            lines.append(text)
            continue
        if tables:
            patient, items, outcome = table_rows(guideline, row, facts, errors)
            summary.add_outcome(outcome)
            patients.append(patient)
            recommendations.extend(items)
            continue
        result = assess_row(guideline, row, facts, cell_errors=errors)
        summary.add(result)
        lines.append(result.to_json(indent=None) if isinstance(result, Assessment)
                     else result.to_json())
    if lines:
        lines.append("")  # the last line's newline, without copying the joined text again
    jsonl = "\n".join(lines).encode("utf-8")
    if _worker_spool is not None and jsonl and not tables:
        return ChunkResult(first_row, b"", patients, recommendations, summary,
                           _worker_spool.write(jsonl))
    return ChunkResult(first_row, jsonl, patients, recommendations, summary)


def _init_worker(spec: GuidelineSpec, spool: str | None) -> None:
    global _worker_guideline, _worker_spool
    guard_worker()  # signals are the parent's to handle; exit if the parent dies
    _worker_guideline = spec.load()
    _worker_spool = _Spool(spool) if spool is not None else None


# --- writing -------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out: Path, fmt: str) -> None:
        self.fmt = fmt
        paths = output_paths(out, fmt)
        self.targets, self.temps = paths[:len(paths) // 2], paths[len(paths) // 2:]
        self.spool_prefix = spool_prefix(out)
        self._spools: dict[str, int] = {}
        self._files: list[Any] = []
        self._parquet: list[Any] = []
        self._csv: list[Any] = []
        if fmt == "jsonl":  # unbuffered: chunks are megabytes, and copied in by fd as well
            self._files = [self.temps[0].open("wb", buffering=0)]
        elif fmt == "csv":
            self._files = [t.open("w", encoding="utf-8", newline="") for t in self.temps]
            self._csv = [csv.writer(f, lineterminator="\n") for f in self._files]
            self._csv[0].writerow(PATIENT_COLUMNS)
            self._csv[1].writerow(RECOMMENDATION_COLUMNS)
        else:
            pa = _pyarrow()
            pq = pa.parquet
            self._schemas = [
                pa.schema([("row", pa.int64()), ("patient_id", pa.string()),
                           ("risk_group", pa.string()), ("features", pa.string()),
                           ("missing", pa.string()), ("recommendations", pa.int64()),
                           ("error", pa.string()), ("parameter_overrides", pa.string())]),
                pa.schema([("row", pa.int64()), ("patient_id", pa.string()),
                           ("id", pa.string()), ("kind", pa.string()),
                           ("severity", pa.string()), ("phase", pa.string())]),
            ]
            self._parquet = [pq.ParquetWriter(t, s) for t, s in zip(self.temps, self._schemas,
                                                                    strict=True)]
        self._complete: list[int] = []
        self.commit()

    def write(self, chunk: ChunkResult) -> None:
        if chunk.spooled is not None:
            self._copy_spooled(chunk.spooled)
        elif self.fmt == "jsonl":
            _write_all(self._files[0].fileno(), chunk.jsonl)
        elif self.fmt == "csv":
            self._csv[0].writerows(chunk.patients)
            self._csv[1].writerows(chunk.recommendations)
        else:
            pa = _pyarrow()
            for writer, schema, rows in zip(self._parquet, self._schemas,
                                            (chunk.patients, chunk.recommendations),
                                            strict=True):
                columns: list[Any] = (list(zip(*rows, strict=True)) if rows
                                      else [[] for _ in schema])
                writer.write_table(pa.table(
                    {f.name: pa.array(col, type=f.type) for f, col in zip(schema, columns,
                                                                           strict=True)},
                    schema=schema))

    def _copy_spooled(self, spooled: Spooled) -> None:
        if spooled.retired is not None:
            self._drop_spool(spooled.retired)
        source = self._spools.get(spooled.path)
        if source is None:
            source = self._spools[spooled.path] = os.open(spooled.path, os.O_RDONLY)
        target = self._files[0].fileno()
        offset, left = spooled.offset, spooled.length
        while left:
            try:
                copied = os.copy_file_range(source, target, left, offset)
            except (AttributeError, OSError):  # not Linux, or not between these filesystems
                copied = _write_all(target, os.pread(source, min(left, 2**24), offset))
            if copied <= 0:
                raise OSError(f"could not copy {left} spooled bytes into the output")
            offset, left = offset + copied, left - copied

    def commit(self) -> None:
        """Mark the output as complete up to here: whatever an interruption (Ctrl-C in the
        middle of a chunk's copy) leaves beyond the mark is cut off on close, so the
        output always ends with a whole chunk. (Parquet writes a row group in one call into
        Arrow, which Ctrl-C does not interrupt.)"""
        for handle in self._files:
            handle.flush()
        self._complete = [os.lseek(h.fileno(), 0, os.SEEK_CUR) for h in self._files]

    def _drop_spool(self, path: str) -> None:
        fd = self._spools.pop(path, None)
        if fd is not None:
            os.close(fd)
        Path(path).unlink(missing_ok=True)

    def close(self, keep: bool) -> list[Path]:
        """Keep the output (cut back to the last whole chunk) or remove it; spools go
        either way. Removing never fails half-way: after a full disk or a file-size limit,
        flushing fails again, and the temporaries must go all the same."""
        if not keep:
            self._discard()
            return []
        for path in list(self._spools):
            self._drop_spool(path)
        remove_abandoned(self.spool_prefix, [])  # a dead worker's, or one never copied from
        for handle, complete in zip(self._files, self._complete, strict=True):
            handle.flush()
            os.ftruncate(handle.fileno(), complete)
            handle.close()
        for writer in self._parquet:
            writer.close()
        for temp, target in zip(self.temps, self.targets, strict=True):
            os.replace(temp, target)
        return self.targets


    def _discard(self) -> None:
        steps: list[Callable[[], Any]] = [lambda: remove_abandoned(self.spool_prefix, [])]
        steps += [functools.partial(self._drop_spool, path) for path in self._spools]
        steps += [functools.partial(os.close, h.fileno()) for h in self._files]
        steps += [w.close for w in self._parquet]
        steps += [functools.partial(t.unlink, missing_ok=True) for t in self.temps]
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        for handle in self._files:  # already closed by fd: nothing left to flush
            with contextlib.suppress(Exception):
                handle.close()


def _write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` to ``fd`` (one ``os.write`` may write less); its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


# --- running -------------------------------------------------------------------------------


@attrs.define
class CohortRun:
    """What a cohort run did."""

    summary: CohortSummary
    outputs: list[Path]
    interrupted: bool = False


def _results(chunks: Iterator[Chunk], tables: bool, workers: int,
             spec: GuidelineSpec, evaluate: bool,
             spool: str | None = None) -> Generator[ChunkResult, None, None]:
    if workers <= 1:
        guideline = spec.load()
        for chunk in chunks:
            yield assess_chunk(chunk, tables, guideline, evaluate)
        return
    task = functools.partial(assess_chunk, tables=tables, guideline=None, evaluate=evaluate)
    yield from map_chunks(chunks, workers, task, _init_worker, (spec, spool))


def map_chunks(chunks: Iterator[Chunk], workers: int, task: Callable[[Chunk], _R],
               initializer: Callable[..., None], initargs: tuple[Any, ...]) -> Iterator[_R]:
    """``task`` of every chunk in ``workers`` processes (each set up by ``initializer``),
    in input order, with at most 2 × ``workers`` chunks in flight."""
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=initializer, initargs=initargs) as pool:
        pending: deque[Future[_R]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(task, chunk))
                if len(pending) >= workers * 2:  # bounded: memory stays flat
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            # The executor terminates and joins the survivors (guard_worker lets the parent's
            # SIGTERM through); killing them here first also covers a platform where workers
            # must ignore every SIGTERM.
            survivors: dict[int, Any] = getattr(pool, "_processes", None) or {}
            for process in list(survivors.values()):
                process.kill()
            raise EvaluationError("a worker process died (out of memory, or killed); the "
                                  "output was not kept") from None
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_cohort(source: Path, out: Path, *, input_format: str | None = None,
               output_format: str | None = None, workers: int = 1,
               spec: GuidelineSpec | None = None,
               progress: Callable[[int], None] | None = None,
               evaluate: bool = True, also_writes: Iterable[Path] = ()) -> CohortRun:
    """Assess every row of ``source`` into ``out``; see the module docstring.

    ``also_writes``: other files the caller writes from this run (a summary), checked with
    the outputs by ``check_outputs`` before anything is written.
    ``evaluate=False`` reads, validates and writes the facts back without evaluating them:
    the I/O floor that tests/benchmarks/bench_cohort.py compares with."""
    spec = spec or GuidelineSpec()
    in_fmt = format_of(source, input_format)
    out_fmt = format_of(out, output_format)
    check_outputs(source, [*output_paths(out, out_fmt), *also_writes])
    guideline = spec.load()
    summary = CohortSummary.for_guideline(guideline)
    chunks = read_nonempty_chunks(source, in_fmt)  # fails before any output exists
    lock = RunLock(out)
    lock.acquire()
    try:
        paths = output_paths(out, out_fmt)
        remove_abandoned(spool_prefix(out), paths[len(paths) // 2:])  # provably: we hold the lock
        writer = _Writer(out, out_fmt)
        interrupted = False
        tables = out_fmt != "jsonl"
        results = _results(chunks, tables, workers, spec, evaluate,
                           None if tables else writer.spool_prefix)
        try:
            try:
                for result in results:
                    writer.write(result)
                    writer.commit()
                    summary.merge(result.summary)
                    if progress is not None:
                        progress(result.summary.patients)
            finally:
                results.close()  # the workers are stopped before their spools are removed
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP as the CLI maps them
            interrupted = True
        except BaseException:
            writer.close(keep=False)
            raise
        outputs = writer.close(keep=True)
    finally:
        lock.release()
    return CohortRun(summary, outputs, interrupted)


def stderr_is_terminal() -> bool:
    return isinstance(sys.stderr, io.TextIOWrapper) and sys.stderr.isatty()
