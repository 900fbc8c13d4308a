"""Ruleset issues as they are found: file, line, rule id and the path inside the rule.

``Issues`` collects ``RulesetIssue`` values for ``all-rules rules check`` and
``RulesetValidationError``; ``RuleReporter`` reports one rule's problems with paths relative
to the rule; ``format_path`` is the one path notation (``rules[3].when.all[0]``) every checker
uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from all_rules.exceptions import RulesetIssue, RulesetLoadError

from ._safe_yaml import Located, PathKey, load_file


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Issues:
    """Every problem found in a ruleset, in the order found."""

    def __init__(self) -> None:
        self.items: list[RulesetIssue] = []

    def add(self, doc: Located | None, file: str, path: PathKey, message: str,
            rule_id: str | None = None, rule_path: PathKey | None = None) -> None:
        line = doc.line_of(path) if doc is not None else None
        shown = format_path(rule_path if rule_path is not None else path)
        self.items.append(RulesetIssue(file, line, rule_id, shown, message))

    def pydantic(self, doc: Located, error: ValidationError, prefix: PathKey = (),
                 rule_id: str | None = None) -> None:
        for item in error.errors():
            loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
            message = str(item["msg"]).removeprefix("Value error, ")
            self.add(doc, doc.file, (*prefix, *loc), message, rule_id,
                     rule_path=loc if rule_id else None)


def validate(model: type[BaseModel], doc: Located, issues: Issues) -> Any:
    try:
        return model.model_validate(doc.data)
    except ValidationError as error:
        issues.pydantic(doc, error)
        return None


def load_doc(path: Path, name: str, issues: Issues) -> Located | None:
    try:
        return load_file(path, name)
    except RulesetLoadError as error:
        issues.items.append(RulesetIssue(error.file, error.line, None, "", error.problem))
        return None


class RuleReporter:
    """Reports issues of one rule: paths relative to the rule, lines from the file."""

    def __init__(self, issues: Issues, doc: Located, prefix: PathKey, rule_id: str) -> None:
        self.issues, self.doc, self.prefix, self.rule_id = issues, doc, prefix, rule_id

    def __call__(self, rule_path: PathKey, message: str) -> None:
        self.issues.add(self.doc, self.doc.file, (*self.prefix, *rule_path), message,
                        self.rule_id, rule_path)

    def absolute(self, path: PathKey, message: str) -> None:
        self(path[len(self.prefix):], message)
