"""``all-rules diff`` on files: the cohort machinery (readers, workers, writer) with two
guidelines per process, writing one JSON line per changed patient or bad row."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

from all_rules.engine._guideline import Guideline

from ._io import ChunkResult, GuidelineSpec, _Writer, map_chunks
from ._many import CohortSummary
from ._read import _EXTENSIONS, Chunk, CohortInputError, facts_of, format_of, read_nonempty_chunks
from .diff import DiffSummary, compare_row


@attrs.frozen
class DiffChunk:
    first_row: int
    jsonl: bytes
    summary: DiffSummary


_worker_pair: tuple[Guideline, Guideline] | None = None


def _init_worker(old: GuidelineSpec, new: GuidelineSpec) -> None:
    global _worker_pair
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _worker_pair = (old.load(), new.load())


def diff_chunk(chunk: Chunk, pair: tuple[Guideline, Guideline] | None = None) -> DiffChunk:
    """Compare one chunk; the same function runs in-process and in workers."""
    pair = pair or _worker_pair
    assert pair is not None
    old, new = pair
    first_row, fmt, items = chunk
    summary = DiffSummary()
    lines: list[str] = []
    for offset, item in enumerate(items):
        facts, errors = facts_of(fmt, item)
        record = compare_row(old, new, first_row + offset, facts, errors)
        if record is None:
            summary.add_unchanged()
            continue
        summary.add(record)
        lines.append(record.to_json())
    if lines:
        lines.append("")
    return DiffChunk(first_row, "\n".join(lines).encode("utf-8"), summary)


@attrs.define
class DiffRun:
    summary: DiffSummary
    outputs: list[Path]
    interrupted: bool = False


def _results(chunks: Iterator[Chunk], workers: int, old: GuidelineSpec,
             new: GuidelineSpec, pair: tuple[Guideline, Guideline]) -> Iterator[DiffChunk]:
    if workers <= 1:
        for chunk in chunks:
            yield diff_chunk(chunk, pair)
        return
    yield from map_chunks(chunks, workers, diff_chunk, _init_worker, (old, new))


def check_output_name(out: Path) -> None:
    """The changes are JSON Lines: refuse an output named as another format."""
    fmt = _EXTENSIONS.get(out.suffix.lower())
    if fmt is not None and fmt != "jsonl":
        raise CohortInputError(f"{out}: diff writes JSON Lines; name the output .jsonl")


def run_diff(source: Path, out: Path, old: GuidelineSpec, new: GuidelineSpec, *,
             input_format: str | None = None, workers: int = 1,
             progress: Callable[[int], None] | None = None) -> DiffRun:
    """Compare every row of ``source`` under ``old`` and ``new`` into ``out`` (JSON Lines:
    a line per changed patient or bad row, in input order). Output safety as ``cohort``:
    a hidden partial file renamed at the end; Ctrl-C keeps whole chunks only."""
    check_output_name(out)
    in_fmt = format_of(source, input_format)
    # Both guidelines load (and any ruleset problem is reported) before any output exists.
    pair = (old.load(), new.load())
    summary = DiffSummary.for_guidelines(*pair)
    chunks = read_nonempty_chunks(source, in_fmt)  # fails before any output exists
    writer = _Writer(out, "jsonl")
    interrupted = False
    try:
        for result in _results(chunks, workers, old, new, pair):
            writer.write(ChunkResult(result.first_row, result.jsonl, [], [], CohortSummary()))
            writer.commit()
            summary.merge(result.summary)
            if progress is not None:
                progress(result.summary.patients)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        writer.close(keep=False)
        raise
    outputs = writer.close(keep=True)
    return DiffRun(summary, outputs, interrupted)
