"""all-rules: the ALL management guideline as declarative rulesets on durable-rules."""

from .engine._guideline import Guideline, assess, validate_facts
from .exceptions import (
    AllRulesError,
    EvaluationError,
    FieldError,
    InvalidFactsError,
    RulesetError,
    RulesetIssue,
    RulesetLoadError,
    RulesetValidationError,
)
from .facts import (
    CnsStatus,
    Dose,
    DoseUnit,
    Drug,
    Lineage,
    PatientFacts,
    Phase,
    PhStatus,
    Plan,
    RelapseSite,
    ResourceLevel,
    Sex,
    Steroid,
)
from .output import Assessment, DoseLine, Evidence, Recommendation, Risk, RulesetInfo
from .ruleset._schema import ItemPhase, Kind, RiskGroup, Severity

__version__ = "0.1.0"

__all__ = [
    "AllRulesError",
    "Assessment",
    "CnsStatus",
    "Dose",
    "DoseLine",
    "DoseUnit",
    "Drug",
    "EvaluationError",
    "Evidence",
    "FieldError",
    "Guideline",
    "InvalidFactsError",
    "ItemPhase",
    "Kind",
    "Lineage",
    "PatientFacts",
    "PhStatus",
    "Phase",
    "Plan",
    "Recommendation",
    "RelapseSite",
    "ResourceLevel",
    "Risk",
    "RiskGroup",
    "RulesetError",
    "RulesetInfo",
    "RulesetIssue",
    "RulesetLoadError",
    "RulesetValidationError",
    "Severity",
    "Sex",
    "Steroid",
    "assess",
    "validate_facts",
]
