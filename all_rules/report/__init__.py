"""Reports people read: text, HTML pages and plots.

Owns the HTML shell and components (``_html``), inline SVG plots (``_plots``), the patient,
cohort and diff reports (``_patient``, ``_cohort``, ``_diff``, ``_change_text``), rule
descriptions and the assessment as text (``_describe``) and the generated docs
(``_gendocs``: ``python -m all_rules.report._gendocs``). It may import ``all_rules.engine``,
``all_rules.ruleset`` and the public face; it imports no other wing and never the command line.
"""
