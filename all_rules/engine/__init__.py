"""The evaluation core: facts in, an ``Assessment`` out, on durable-rules.

Owns loading durable's C module (``_durable``); the compiler of a ruleset into durable rule
definitions (``_compile``); the engine state, the only module that calls durable, with its
hazard list, lock, session renewal and fork safety (``_state``); the evaluation of one patient
on the compiled network (``_network``); fact preparation (``_prepare``), bounded reading of
one patient document (``_input``) and hand-written JSON (``_encode``); assembly of the output
(``_assemble``): the per-rule tables (``_ruleinfo``), the selection (``_select``), wording
and evidence (``_wording``, with the wording of conditions in ``_format``), doses
(``_doses``), bounded memos (``_memo``) and the JSON text (``_jsontext``); the independent
evaluator that explains why a rule fired or not (``_evaluator``, ``_explainer``), the
explanation models (``_explanation``, public as ``all_rules.explain``) and the
``Guideline`` object that ties them together (``_guideline``). It may import
``all_rules.ruleset`` and the public face's value modules; it imports no wing (``fhir``,
``cds``, ``cohort``, ``report``, ``cli``).
"""
