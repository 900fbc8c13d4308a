"""Cohorts on a Dask cluster (needs ``all-rules[dask]``).

``assess_dask(frame)`` assesses a Dask DataFrame partition by partition, on whatever cluster
the active Dask client points to, and returns the two lazy result frames (one row per
patient, one row per recommendation), identical to ``assess_frame`` on the whole data:
row numbers are global, computed from the partition lengths.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from all_rules.engine._guideline import Guideline

from ._io import GuidelineSpec
from .frames import assess_frame, empty_frames

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["assess_dask"]


@functools.cache
def _guideline(spec: GuidelineSpec) -> Guideline:
    """One guideline per worker process and spec, built on first use."""
    return spec.load()


def _assess_partition(partition: pd.DataFrame, first_row: int,
                      spec: GuidelineSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    return assess_frame(partition, guideline=_guideline(spec), first_row=first_row)


def assess_dask(frame: dd.DataFrame, *, rules: str | None = None, overlay: str | None = None,
                parameters: Mapping[str, float] | None = None,
                unsafe_overrides: Mapping[str, Mapping[str, Any]] | None = None,
                ) -> tuple[dd.DataFrame, dd.DataFrame]:
    """Lazy (patients, recommendations) frames for a Dask DataFrame of patient facts.

    Compute both at once (``dask.compute(patients, recommendations)``) so that each
    partition is assessed once. ``rules``, ``overlay``, ``parameters`` and
    ``unsafe_overrides`` select the guideline as ``Guideline.load`` does; workers load it
    once each.
    """
    try:
        import dask.dataframe as dd
        from dask.delayed import delayed
    except ImportError:
        raise ImportError("Dask support needs: pip install 'all-rules[dask]'") from None
    spec = GuidelineSpec(rules, overlay, tuple(sorted((parameters or {}).items())),
                         tuple((name, item.get("value"), item.get("reason"))
                               for name, item in sorted((unsafe_overrides or {}).items())))
    spec.load()  # refuse an invalid ruleset or overlay here, not on every worker
    source: Any = frame  # dask's own annotations are partial
    lengths = source.map_partitions(len).compute()
    offsets, row = [], 1
    for length in lengths:
        offsets.append(row)
        row += int(length)
    pieces: list[Any] = [
        delayed(_assess_partition, nout=2, pure=True)(part, offset, spec)
        for part, offset in zip(source.to_delayed(), offsets, strict=True)]
    meta_patients, meta_recommendations = empty_frames()
    patients = dd.from_delayed([p[0] for p in pieces], meta=meta_patients, verify_meta=False)
    recommendations = dd.from_delayed([p[1] for p in pieces], meta=meta_recommendations,
                                      verify_meta=False)
    return patients, recommendations
