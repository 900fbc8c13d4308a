"""The evaluation core: facts in, an ``Assessment`` out, on durable-rules.

Owns loading durable's C module (``_durable``, the only module that talks to durable), the
compiled rule network and its per-patient sessions (``_network``), fact preparation
(``_prepare``), bounded reading of one patient document (``_input``), assembly of the output
(``_assemble``, with the wording of conditions in ``_format``), the independent evaluator that
explains why a rule fired or not (``_evaluator``, ``_explainer``) and the ``Guideline`` object
that ties them together (``_guideline``). It may import ``all_rules.ruleset`` and the public
face's value modules; it imports no wing (``fhir``, ``cds``, ``cohort``, ``report``, ``cli``).
"""
