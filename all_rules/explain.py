"""Why and why not: the explanation of any rule for one patient (docs/explain.md).

``Guideline.explain(facts, rule_id)`` and ``all-rules explain`` return an
:class:`Explanation`. The models are built by the engine (``all_rules.engine._explainer``,
from a second evaluator of the condition language, independent of the rule engine) and live
beside it (``all_rules.engine._explanation``); this module is their public path.
"""

from all_rules.engine._explanation import (
    ConditionExplanation,
    Explanation,
    RiskExplanation,
    RuleExplanation,
    UndecidedFeature,
    UnknownRuleError,
    explanation_text,
)

__all__ = ["ConditionExplanation", "Explanation", "RiskExplanation", "RuleExplanation",
           "UndecidedFeature", "UnknownRuleError", "explanation_text"]
