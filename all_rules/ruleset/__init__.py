"""The guideline as data: loading and checking the ruleset files.

Owns the ruleset file schema (``_schema``), the safe position-keeping YAML loader
(``_safe_yaml``), the condition language (``_conditions``), the fact specs (``_factspec``),
wording templates (``_template``), the checked values ``Ruleset`` and ``Rule`` (``_model``),
issues with file, line, rule id and path (``_issues``), loading and checking in named steps
(``_loader``: ``check``, ``load``) with one checker per concern (``_checks``), parameter
values under overrides and their safe ranges (``_parameters``), and the content
policy of ``all-rules rules check`` (``_policy``), and the shipped earlier versions
(``_versions``). It may import the public face's value modules
(``all_rules.facts``, ``all_rules.output``, ``all_rules.exceptions``) and nothing else of the
package: no engine, no wing. docs/architecture.md gives the whole map.
"""
