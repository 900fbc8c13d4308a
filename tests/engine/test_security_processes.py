"""Copies and processes: a Guideline copies and pickles as a new one (never breaking the
original), works in multiprocessing pools with fork and spawn, and a child forked while
another thread evaluates neither deadlocks nor reuses the parent's engine state
(docs/security.md)."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from all_rules import EvaluationError, Guideline, synth
from all_rules.engine._network import Engine
from all_rules.exceptions import RulesetLoadError

from ..conftest import RULESETS

PATIENTS: list[dict[str, Any]] = list(synth.patients(40, seed=7))


def _expected(guideline: Guideline) -> list[str]:
    return [guideline.assess_json(p) for p in PATIENTS]


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_copy_has_its_own_engine_and_closing_it_spares_the_original(
        fresh_guideline: Guideline, copier: Any) -> None:
    """copy.copy / copy.deepcopy give a guideline with a new engine and identical results;
    closing the copy leaves the original working (a shared engine would be freed)."""
    expected = _expected(fresh_guideline)
    twin = copier(fresh_guideline)
    assert twin.engine is not fresh_guideline.engine
    assert _expected(twin) == expected
    twin.close()
    assert _expected(fresh_guideline) == expected


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy, pickle.dumps],
                         ids=["copy", "deepcopy", "pickle"])
def test_an_engine_alone_refuses_to_be_copied(fresh_guideline: Guideline, copier: Any) -> None:
    """An Engine copied or pickled would share its C engine: a clear TypeError instead,
    and the original goes on working."""
    expected = _expected(fresh_guideline)
    with pytest.raises(TypeError, match="Guideline"):
        copier(fresh_guideline.engine)
    assert _expected(fresh_guideline) == expected
    assert isinstance(fresh_guideline.engine, Engine)


def test_pickling_keeps_parameters_and_the_digest(tmp_path: Path) -> None:
    """A pickled guideline with an overlay and a parameter comes back with the same values,
    digest and unsafe overrides with their reasons (loaded once per process), and the
    original still works."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  adult_b_wbc_10e9_per_l: 25\nunsafe_overrides:\n"
                       "  nci_wbc_10e9_per_l: {value: 60, reason: our protocol}\n",
                       encoding="utf-8")
    guideline = Guideline.load(overlay=overlay, parameters={"adult_age_years": 21})
    try:
        twin = pickle.loads(pickle.dumps(guideline))
        assert twin.ruleset.digest == guideline.ruleset.digest
        assert twin.ruleset.values == guideline.ruleset.values
        assert twin.ruleset.override_reasons == {"nci_wbc_10e9_per_l": "our protocol"}
        assert twin.assess({"age_years": 5}).parameter_overrides == \
            guideline.assess({"age_years": 5}).parameter_overrides
        assert pickle.loads(pickle.dumps(guideline)) is twin
        assert _expected(twin) == _expected(guideline)
    finally:
        guideline.close()


def test_a_ruleset_changed_since_pickling_is_refused(tmp_path: Path) -> None:
    """Unpickling loads the ruleset directory again: if its files changed, the digest
    differs and unpickling fails clearly rather than assessing with other rules."""
    directory = tmp_path / "rules"
    shutil.copytree(RULESETS, directory)
    guideline = Guideline.load(directory)
    data = pickle.dumps(guideline)
    guideline.close()
    manifest = directory / "ruleset.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "\n# changed\n",
                        encoding="utf-8")
    with pytest.raises(RulesetLoadError, match="changed since this guideline was pickled"):
        pickle.loads(data)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_assess_json_in_a_multiprocessing_pool(guideline: Guideline, method: str) -> None:
    """`Pool.map(guideline.assess_json, patients)` gives the in-process results with both
    start methods."""
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        results = pool.map(guideline.assess_json, PATIENTS, chunksize=5)
    assert results == _expected(guideline)


def _fork_and_check(check: Callable[[], bool]) -> int:
    """Fork; the child exits 0 if ``check()`` holds. Returns the child's exit status, or -1
    if it did not finish within 20 s (a deadlock)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if check() else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -1


def test_fork_while_another_thread_evaluates(fresh_guideline: Guideline) -> None:
    """A fork while another thread is inside the engine (holding its lock, with facts
    asserted in its state): the child neither deadlocks nor sees the parent's half-done
    state — every child's answer is right — and the parent's thread carries on."""
    expected = fresh_guideline.assess_json(PATIENTS[0])
    others = _expected(fresh_guideline)
    stop = threading.Event()
    wrong: list[int] = []

    def evaluate() -> None:
        while not stop.is_set():
            for index, patient in enumerate(PATIENTS):
                if fresh_guideline.assess_json(patient) != others[index]:
                    wrong.append(index)

    worker = threading.Thread(target=evaluate)
    worker.start()
    try:
        time.sleep(0.05)
        statuses = [_fork_and_check(lambda: fresh_guideline.assess_json(PATIENTS[0]) == expected)
                    for _ in range(15)]
    finally:
        stop.set()
        worker.join()
    assert statuses == [0] * 15
    assert wrong == []


def test_a_closed_guideline_forked_stays_closed(fresh_guideline: Guideline) -> None:
    """Renewal after fork never reopens an engine closed before the fork."""
    fresh_guideline.close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            fresh_guideline.assess_json(PATIENTS[0])
            os._exit(1)
        except EvaluationError:
            os._exit(0)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_fork_while_the_default_guideline_lock_is_held(guideline: Guideline) -> None:
    """A fork while some thread holds the lock guarding the shared default guideline: the
    child gets a new lock and assesses, instead of waiting forever."""
    from all_rules.engine import _guideline

    expected = guideline.assess_json(PATIENTS[0])
    with _guideline._default_lock:
        status = _fork_and_check(
            lambda: Guideline.default().assess_json(PATIENTS[0]) == expected)
    assert status == 0
