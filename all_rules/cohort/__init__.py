"""Cohorts: many patients, one result per row, in order; a bad row never stops the run.

Owns assessing an iterable of patients (``_many``: ``assess_many``, ``CohortSummary``,
``RowError``), flat records and their columns (``_records``), reading CSV, JSON Lines and
Parquet (``_read``), the parallel runner and its output safety (``_io``, ``_guard``), data
frames (``frames``, needs ``all-rules[cohort]``), Dask clusters (``dask_cluster``, needs
``all-rules[dask]``), synthetic cohorts (``synth``) and comparing two guidelines over one
cohort (``diff``, ``_compare``). The public modules are ``frames``, ``dask_cluster``,
``synth`` and ``diff``; import them by name, so that the optional extras load only when used.
It may import ``all_rules.engine``, ``all_rules.ruleset`` and the public face; it imports no
other wing and never the command line. docs/cohorts.md and docs/diff.md show it in use.
"""

from ._many import CohortSummary, RowError, RowErrorField, assess_many, table_rows

__all__ = ["CohortSummary", "RowError", "RowErrorField", "assess_many", "table_rows"]
