"""The house with wings (docs/architecture.md): imports point one way, no circles, short units.

The import graph is built from the package's source, not from what happens to be imported at
run time: every ``import`` and ``from … import`` counts, at module level, inside a function
(a lazy import is still an arrow) or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import all_rules

PACKAGE = Path(all_rules.__file__).resolve().parent

#: The parts of the house. A module belongs to the first part whose prefix it has.
PARTS: tuple[tuple[str, str], ...] = (
    ("all_rules.ruleset", "ruleset"),
    ("all_rules.engine", "engine"),
    ("all_rules.fhir", "fhir"),
    ("all_rules.cds", "cds"),
    ("all_rules.cohort", "cohort"),
    ("all_rules.report", "report"),
    ("all_rules.cli", "cli"),
)
#: The top level: the public face, its values, and the old paths kept as aliases.
TOP_LEVEL = {
    "all_rules": "face",
    "all_rules.explain": "face",
    "all_rules.facts": "values",
    "all_rules.output": "values",
    "all_rules.exceptions": "values",
    "all_rules.frames": "alias",
    "all_rules.dask": "alias",
    "all_rules.diff": "alias",
    "all_rules.synth": "alias",
}
CORE = {"values", "ruleset", "engine", "face"}
#: What each part may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "values": set(),
    "ruleset": {"values"},
    "engine": {"values", "ruleset"},
    "face": {"values", "ruleset", "engine"},
    "fhir": CORE,
    "cds": CORE | {"fhir"},
    "cohort": CORE,
    "report": CORE,
    "alias": CORE | {"cohort"},
    "cli": CORE | {"fhir", "cds", "cohort", "report"},
}
WINGS = {"fhir", "cds", "cohort", "report"}
WING_PREFIXES = ("_cds_", "_cohort_", "_fhir_", "_report_", "_diff_")
MAX_CLASS_LINES = 150
MAX_FUNCTION_LINES = 60


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name → source file, for every module of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, tree: ast.AST, known: Mapping[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = next(iter(known)).split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == root)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != root:
                continue
            for alias in node.names:  # `from package import module` imports the module
                full = f"{target}.{alias.name}"
                yield full if full in known else target


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports (anywhere in its source)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {target for target in _imported(name, path, tree, known)
                       if target != name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def part_of(module: str) -> str | None:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return next((part for prefix, part in PARTS
                 if module == prefix or module.startswith(prefix + ".")), None)


def wrong_way(graph: Mapping[str, set[str]]) -> list[str]:
    """Every import against the direction of docs/architecture.md, as ``a -> b (why)``."""
    found = []
    for source, targets in sorted(graph.items()):
        source_part = part_of(source)
        for target in sorted(targets):
            target_part = part_of(target)
            if source_part is None or target_part is None or source_part == target_part:
                continue
            if target_part not in MAY_IMPORT[source_part]:
                found.append(f"{source} -> {target} ({source_part} may not import "
                             f"{target_part})")
            elif (source_part in WINGS and target_part in WINGS
                  and target != f"all_rules.{target_part}"):
                found.append(f"{source} -> {target} (a wing imports another wing only "
                             f"through its package, all_rules.{target_part})")
    return found


def test_the_package_has_no_import_cycle() -> None:
    """No circle anywhere in ``all_rules``, lazy imports included."""
    assert cycles(import_graph(PACKAGE)) == []


def test_imports_point_one_way() -> None:
    """cli → wings → engine → ruleset → values; no wing imports the command line, the engine
    imports no wing, and a wing reaches another only through that wing's package."""
    assert wrong_way(import_graph(PACKAGE)) == []


def test_every_module_belongs_to_a_part() -> None:
    """A new module goes into the wing that owns it; the top level is only the public face."""
    assert [name for name in modules(PACKAGE) if part_of(name) is None] == []


def test_no_module_name_carries_a_wing_prefix() -> None:
    """Folders, not prefixes, say which wing a module is in."""
    assert [path.name for path in PACKAGE.rglob("*.py")
            if path.name.startswith(WING_PREFIXES)] == []


def test_every_part_says_what_it_owns() -> None:
    """Each sub-package's ``__init__`` starts with a docstring saying what it owns and what
    it may import."""
    for prefix, _ in PARTS:
        init = PACKAGE / prefix.removeprefix("all_rules.") / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring, init
        assert re.search(r"\bimport", docstring), f"{init}: say what it may import"


def test_every_module_is_named_where_its_part_is_described() -> None:
    """Each module of a sub-package is named in that package's docstring and in
    docs/architecture.md, so the map a newcomer reads is the house as it is."""
    architecture = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = []
    for name, path in modules(PACKAGE).items():
        package, _, stem = name.rpartition(".")
        if path.name == "__init__.py" or package == "all_rules":
            continue
        init = PACKAGE / package.removeprefix("all_rules.") / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if f"``{stem}``" not in docstring:
            unnamed.append(f"{name}: not in {package}'s docstring")
        if f"`{stem}`" not in architecture:
            unnamed.append(f"{name}: not in docs/architecture.md")
    assert unnamed == []


def test_no_module_is_imported_by_name_at_run_time() -> None:
    """``importlib`` and ``__import__`` would hide an arrow from the graph; only the loader of
    durable's C module (``engine/_durable.py``) imports by name."""
    found = []
    for name, path in modules(PACKAGE).items():
        text = path.read_text(encoding="utf-8")
        if name != "all_rules.engine._durable" and re.search(
                r"\bimport_module\(|\b__import__\(|\bimportlib\b", text):
            found.append(name)
    assert found == []


def test_units_read_in_one_sitting() -> None:
    """No class over 150 lines and no function over 60 lines in ``all_rules``."""
    long_units = []
    for name, path in modules(PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
                long_units.append(f"{name}.{node.name}: class of {lines} lines")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    lines > MAX_FUNCTION_LINES:
                long_units.append(f"{name}.{node.name}: function of {lines} lines")
    assert long_units == []


# --- the checks themselves catch what they are for ----------------------------------------


def _package(root: Path, files: Mapping[str, str]) -> Path:
    for relative, source in files.items():
        path = root / "all_rules" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root / "all_rules"


def test_a_lazy_import_inside_a_function_closes_a_cycle(tmp_path: Path) -> None:
    """The graph counts imports inside functions and relative ``from . import module``."""
    package = _package(tmp_path, {
        "__init__.py": "",
        "output.py": "def explain():\n    from .engine import _guideline\n",
        "engine/__init__.py": "",
        "engine/_guideline.py": "from all_rules.output import Assessment\n",
    })
    assert cycles(import_graph(package)) == [["all_rules.engine._guideline", "all_rules.output"]]


@pytest.mark.parametrize(("source", "target", "why"), [
    ("engine/_x.py", "from all_rules.cohort import _io", "engine may not import cohort"),
    ("cohort/_x.py", "from all_rules.cli import main", "cohort may not import cli"),
    ("output.py", "from all_rules.ruleset import _schema", "values may not import ruleset"),
    ("cds/_x.py", "from all_rules.fhir._read import MAP", "only through its package"),
])
def test_an_import_against_the_direction_is_named(tmp_path: Path, source: str, target: str,
                                                  why: str) -> None:
    """Each kind of wrong-way import is reported with the rule it breaks."""
    package = _package(tmp_path, {
        "__init__.py": "", "output.py": "", "engine/__init__.py": "", "ruleset/__init__.py": "",
        "ruleset/_schema.py": "", "cohort/__init__.py": "", "cohort/_io.py": "",
        "cli/__init__.py": "def main(): ...\n", "cds/__init__.py": "", "fhir/__init__.py": "",
        "fhir/_read.py": "MAP = {}\n",
        source: target + "\n",
    })
    problems = wrong_way(import_graph(package))
    assert len(problems) == 1
    assert why in problems[0]


# --- public paths -------------------------------------------------------------------------

ALIASES = {
    "all_rules.frames": "all_rules.cohort.frames",
    "all_rules.dask": "all_rules.cohort.dask_cluster",
    "all_rules.diff": "all_rules.cohort.diff",
    "all_rules.synth": "all_rules.cohort.synth",
}


@pytest.mark.parametrize(("old", "new"), sorted(ALIASES.items()))
def test_an_old_public_path_gives_the_same_objects(old: str, new: str) -> None:
    """A module that moved into a wing keeps its old path as an alias (docs/architecture.md):
    every public name of the new module is the very same object under the old path."""
    import importlib

    moved, alias = importlib.import_module(new), importlib.import_module(old)
    assert alias.__all__ == moved.__all__
    assert moved.__all__
    for name in moved.__all__:
        assert getattr(alias, name) is getattr(moved, name), name
    others = [name for name in vars(moved) if not name.startswith("__")
              and name not in moved.__all__]
    assert others  # the old modules had names outside __all__ too (synth.COLUMNS, …)
    for name in others:
        assert getattr(alias, name) is getattr(moved, name), name


@pytest.mark.parametrize("path", [
    "all_rules.assess", "all_rules.Guideline", "all_rules.PatientFacts", "all_rules.Assessment",
    "all_rules.Kind", "all_rules.RiskGroup", "all_rules.InvalidFactsError",
    "all_rules.explain.Explanation", "all_rules.explain.UnknownRuleError",
    "all_rules.fhir.facts_from_bundle", "all_rules.fhir.assess_bundle", "all_rules.fhir.Windows",
    "all_rules.cds.create_app", "all_rules.cds.ServiceSettings",
    "all_rules.cohort.assess_many", "all_rules.cohort.CohortSummary", "all_rules.cohort.RowError",
    "all_rules.cohort.frames.assess_frame", "all_rules.cohort.dask_cluster.assess_dask",
    "all_rules.cohort.diff.compare", "all_rules.cohort.synth.patients", "all_rules.cli.main",
])
def test_every_documented_import_path_works(path: str) -> None:
    """The paths README and docs/ show import (the wing packages re-export their public
    names)."""
    import importlib

    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is not None
