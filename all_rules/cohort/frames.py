"""Cohorts as pandas data frames (needs ``all-rules[cohort]``).

``assess_frame(df)`` takes one row per patient, with columns named as the facts
(docs/facts.md; ``plan.*`` dotted columns and ``plan.doses`` as in CSV, docs/cohorts.md),
and returns two frames: one row per patient and one row per recommendation — the same tables
``all-rules cohort`` writes for CSV and Parquet output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from all_rules.engine._guideline import Guideline

from ._many import PATIENT_COLUMNS, RECOMMENDATION_COLUMNS, table_rows
from ._records import record_to_facts, unknown_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PATIENT_COLUMNS", "RECOMMENDATION_COLUMNS", "assess_frame"]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("data frames need pandas: pip install 'all-rules[cohort]'") from None
    return pandas


def empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two result frames with their columns and dtypes, and no rows (Dask's meta)."""
    pandas = _pandas()
    return _typed(pandas.DataFrame(columns=list(PATIENT_COLUMNS)),
                  pandas.DataFrame(columns=list(RECOMMENDATION_COLUMNS)))


def _typed(patients: pd.DataFrame, recommendations: pd.DataFrame
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    patients = patients.astype({"row": "int64", "recommendations": "int64",
                                "patient_id": "object", "risk_group": "object",
                                "features": "object", "missing": "object",
                                "error": "object", "parameter_overrides": "object"})
    recommendations = recommendations.astype({"row": "int64", "patient_id": "object",
                                              "id": "object", "kind": "object",
                                              "severity": "object", "phase": "object"})
    return patients, recommendations


def assess_frame(frame: pd.DataFrame, *, guideline: Guideline | None = None,
                 first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assess every row of ``frame``: (patients, recommendations) frames.

    A bad row becomes a patient row with ``error`` set, never an exception. ``row`` numbers
    start at ``first_row`` (1 by default; Dask partitions pass their offset). Unknown
    columns are refused up front (ValueError), as a CSV header would be.
    """
    pandas = _pandas()
    problems = unknown_columns(frame.columns)
    if problems:
        raise ValueError("; ".join(problems))
    guideline = guideline or Guideline.default()
    patients, recommendations = [], []
    for row, record in enumerate(frame.to_dict("records"), start=first_row):
        facts, cell_errors = record_to_facts({str(k): v for k, v in record.items()})
        patient, items, _ = table_rows(guideline, row, facts, cell_errors)
        patients.append(patient)
        recommendations.extend(items)
    return _typed(pandas.DataFrame(patients, columns=list(PATIENT_COLUMNS)),
                  pandas.DataFrame(recommendations, columns=list(RECOMMENDATION_COLUMNS)))
