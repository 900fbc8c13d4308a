"""Loading durable-rules' C module on Python 3.11–3.13 (all_rules/engine/_durable.py).

On 3.13 the module references ``PyEval_CallObject``, removed from that Python, in its message
callbacks only; it is loaded with lazy binding, which is safe because the project never
registers a callback. These tests pin each part of that argument on whichever Python runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import all_rules
from all_rules.engine import _durable

PACKAGE = Path(all_rules.__file__).parent


def test_the_engine_module_loads_and_evaluates() -> None:
    """The module the engine uses is durable's C module, and it fires rules on this Python."""
    assert _durable.engine.__name__ == "durable_rules_engine"
    assessment = all_rules.assess({"age_years": 42, "lineage": "B", "ph_status": "positive"})
    assert "ph.tki_required" in assessment.ids()


def test_loading_leaves_the_interpreters_dlopen_flags_as_they_were() -> None:
    """Lazy binding is used for durable's module alone: other extensions load as usual."""
    script = textwrap.dedent("""
        import sys
        before = sys.getdlopenflags()
        import all_rules.engine._durable
        print(before == sys.getdlopenflags())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "True"


def test_the_project_never_registers_a_durable_callback() -> None:
    """The callbacks are the only code in the module that calls the symbol 3.13 removed; no
    module of the package may name them (so the lazily bound symbol is never reached)."""
    offenders = []
    for source in PACKAGE.rglob("*.py"):
        if source.name == "_durable.py":
            continue
        text = source.read_text(encoding="utf-8")
        offenders += [f"{source.name}: {name}" for name in _durable.CALLBACK_SETTERS
                      if name in text]
        if re.search(r"\b(?:_dre|dre|engine)\s*\.\s*set_\w*callback", text):
            offenders.append(f"{source.name}: a callback setter")
    assert offenders == []


def test_every_callback_setter_still_exists() -> None:
    """The list of setters is the module's own: a durable release that renamed or added one
    would make the previous test check the wrong names."""
    names = {name for name in dir(_durable.engine) if "callback" in name}
    assert names == set(_durable.CALLBACK_SETTERS)


def test_assessments_never_touch_a_callback_setter(monkeypatch: pytest.MonkeyPatch) -> None:
    """At run time too: with every setter made to raise, assessments of varied patients run."""
    from all_rules.cohort.synth import patients

    def refuse(*args: object) -> None:
        raise AssertionError("a durable callback was registered")

    guideline = all_rules.Guideline.load()
    for name in _durable.CALLBACK_SETTERS:
        monkeypatch.setattr(_durable.engine, name, refuse)
    for row in patients(300, seed=3):
        guideline.assess(row)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="the symbol exists before 3.13")
def test_immediate_binding_fails_on_313_with_the_cause_and_the_remedy() -> None:
    """With LD_BIND_NOW forcing immediate binding, 3.13 cannot load the module: the error says
    why and how to rebuild durable-rules, rather than a bare undefined symbol."""
    env = {**os.environ, "LD_BIND_NOW": "1"}
    result = subprocess.run([sys.executable, "-c", "import all_rules"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "PyEval_CallObject" in result.stderr
    assert "CPPFLAGS" in result.stderr
    assert "LD_BIND_NOW" in result.stderr
