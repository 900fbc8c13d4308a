"""The evaluation session: hygiene, concurrency, failure, and unknown-value semantics."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import all_rules.engine._state as engine_module
from all_rules import EvaluationError, Guideline, assess
from all_rules.engine._durable import engine as dre
from all_rules.engine._state import ENGINE_LOCK

from ..support.heap import run_with_garbage_heap

ADULT_PH = {"patient_id": "P-1", "age_years": 42, "lineage": "B", "ph_status": "positive",
            "wbc_at_diagnosis_10e9_per_l": 45, "cns_status": "CNS1", "bsa_m2": 1.9}


def _rss_kib() -> int:
    fields = Path("/proc/self/status").read_text().split("\n")
    line = next(f for f in fields if f.startswith("VmRSS:"))
    return int(line.split()[1])


def _patient(i: int) -> dict[str, Any]:
    return {"patient_id": f"PAT{i:07d}", "age_years": (i % 80) + 0.5,
            "lineage": "BT"[i % 2], "ph_status": ("positive", "negative", "unknown")[i % 3],
            "wbc_at_diagnosis_10e9_per_l": float(i % 150),
            "phase": ("diagnosis", "induction", "consolidation", "maintenance",
                      "relapsed", "refractory")[i % 6],
            "mrd_end_of_induction_percent": (i % 7) / 100, "relapse_count": i % 3,
            "bsa_m2": 1.0 + (i % 10) / 10}


def _signature(guideline: Guideline, facts: dict[str, Any]) -> str:
    return guideline.assess(facts).to_json()


@pytest.mark.slow
def test_100k_consecutive_evaluations_no_error_no_growth(fresh_guideline: Guideline) -> None:
    """100,000 evaluations in a row: none fails, states are freed, memory stays flat."""
    for i in range(2_000):  # warm caches and allocator pools before the baseline
        fresh_guideline.assess(_patient(i))
    baseline = _rss_kib()
    reference = {i: _signature(fresh_guideline, _patient(i)) for i in range(0, 100_000, 9_973)}
    for i in range(100_000):
        assessment = fresh_guideline.assess(_patient(i))
        assert assessment.risk.group is not None
        if i in reference:
            assert assessment.to_json() == reference[i]
    growth = _rss_kib() - baseline
    assert growth < 20_000, f"resident memory grew by {growth} KiB"
    # Nothing is left behind: the reused session state holds no fact.
    assert _facts_left(fresh_guideline) == []


def _facts_left(guideline: Guideline) -> list[Any] | None:
    """The facts in the engine's session state; None when no state exists."""
    engine = guideline.engine
    with ENGINE_LOCK:
        try:
            return list(json.loads(dre.get_facts(engine._handle, engine._session.sid)))
        except dre.error as error:
            if "309" not in str(error):  # ERR_SID_NOT_FOUND: no state; anything else is wrong
                raise
            return None


def test_a_reused_session_state_gives_the_results_of_fresh_ones(
        fresh_guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """One session state serves patient after patient (creating one costs more than an
    evaluation); no patient's facts or derivations leak into the next: 3,000 patients in a
    row give exactly what a fresh state per patient gives."""
    patients = [_patient(i) for i in range(3_000)]
    reused = [_signature(fresh_guideline, p) for p in patients]
    monkeypatch.setattr(engine_module, "RENEW_EVERY", 1)
    fresh = [_signature(fresh_guideline, p) for p in patients]
    assert _facts_left(fresh_guideline) is None  # renewed after every evaluation
    assert reused == fresh


def test_the_session_state_is_renewed_periodically(
        fresh_guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every RENEW_EVERY evaluations the state is deleted; the next evaluation makes one."""
    monkeypatch.setattr(engine_module, "RENEW_EVERY", 3)
    fresh_guideline.assess(ADULT_PH)
    fresh_guideline.assess(ADULT_PH)
    assert _facts_left(fresh_guideline) == []
    fresh_guideline.assess(ADULT_PH)
    assert _facts_left(fresh_guideline) is None
    assert fresh_guideline.assess(ADULT_PH).risk.group.value == "high"
    assert _facts_left(fresh_guideline) == []


def test_a_state_on_which_nothing_fired_can_be_deleted() -> None:
    """durable frees a state's action context on deletion but only a started action ever
    sets it; a new state is primed, so an engine whose evaluations fired nothing (here: a
    fact no rule matches) is renewed and closed without crashing the process. (Run apart, on a
    garbage heap: without the priming this segfaults.)"""
    script = textwrap.dedent("""
        import all_rules.engine._network as E
        import all_rules.engine._state as S
        from all_rules import Guideline
        S.RENEW_EVERY = 2
        E.Engine._patient_message = lambda self, values: (
            '{"t":"nobody","sid":"%s","id":"patient"}' % self._session.sid)
        for _ in range(3):
            guideline = Guideline.load()
            for _ in range(5):  # renewed after every second evaluation
                assert guideline.engine.evaluate({"age_years": 40.0}) == []
            guideline.close()
        print("survived")
    """)
    result = run_with_garbage_heap(script)
    assert (result.returncode, result.stdout.strip()) == (0, "survived"), result.stderr


def test_a_fact_left_in_the_session_state_fails_the_evaluation(guideline: Guideline) -> None:
    """Were a fact left from an earlier evaluation, the patient's own assert is refused (code
    2): the evaluation fails, the state is deleted, and the next evaluation is right."""
    expected = _signature(guideline, ADULT_PH)
    engine = guideline.engine
    with ENGINE_LOCK:
        dre.assert_fact(engine._handle, json.dumps(
            {"t": "patient", "sid": engine._session.sid, "id": "patient", "age_years": 5}))
    with pytest.raises(EvaluationError, match="refused a fact"):
        guideline.assess(ADULT_PH)
    assert _facts_left(guideline) is None
    assert _signature(guideline, ADULT_PH) == expected


def test_a_retraction_that_leaves_a_fact_fails_the_evaluation(
        guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """After each evaluation the state must be empty; if a retraction kept a fact, the
    evaluation fails instead of passing the fact to the next patient."""
    expected = _signature(guideline, ADULT_PH)
    real = dre.retract_facts

    def keeps_the_patient(handle: int, facts: str) -> Any:
        kept = [f for f in json.loads(facts) if f["t"] != "patient"]
        return real(handle, json.dumps(kept))

    monkeypatch.setattr(dre, "retract_facts", keeps_the_patient)
    with pytest.raises(EvaluationError, match="kept a fact"):
        guideline.assess(ADULT_PH)
    monkeypatch.setattr(dre, "retract_facts", real)
    assert _facts_left(guideline) is None
    assert _signature(guideline, ADULT_PH) == expected


def test_eight_threads_match_a_sequential_run(guideline: Guideline) -> None:
    """8 threads assessing at once give exactly the sequential results."""
    patients = [_patient(i) for i in range(800)]
    expected = [_signature(guideline, p) for p in patients]
    results: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            results[worker] = [_signature(guideline, p) for p in patients[worker::8]]
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker in range(8):
        assert results[worker] == expected[worker::8]


def test_injected_engine_failure_raises_and_the_next_evaluation_is_correct(
        guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the engine surfaces as EvaluationError (no partial result), the
    session state is freed, and the next evaluation is right."""
    expected = _signature(guideline, ADULT_PH)
    real = dre.complete_and_start_action
    calls = {"n": 0}

    def failing(handle: int, state: int) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected failure {\"age_years\": 42}")
        return real(handle, state)

    monkeypatch.setattr(dre, "complete_and_start_action", failing)
    with pytest.raises(EvaluationError, match="injected failure") as caught:
        guideline.assess(ADULT_PH)
    assert "42" not in str(caught.value), "engine error text must not echo the patient's fact"
    monkeypatch.setattr(dre, "complete_and_start_action", real)
    assert _facts_left(guideline) is None  # the failed evaluation's state was deleted
    assert _signature(guideline, ADULT_PH) == expected


def test_unknown_rule_name_from_the_engine_is_an_error(
        guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fired rule the compiler did not emit is refused, not skipped."""
    monkeypatch.setattr(guideline.engine, "_entries", {})
    with pytest.raises(EvaluationError, match="unknown rule"):
        guideline.assess(ADULT_PH)


def test_failure_to_free_state_is_an_error(
        guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the session state cannot be freed (here when it is due for renewal), the
    evaluation fails instead of leaking."""
    monkeypatch.setattr(engine_module, "RENEW_EVERY", 1)
    real = dre.delete_state

    def failing(handle: int, sid: str) -> None:
        real(handle, sid)
        raise dre.error("Could not delete state, error code: 999")

    monkeypatch.setattr(dre, "delete_state", failing)
    with pytest.raises(EvaluationError, match="free its session state"):
        guideline.assess(ADULT_PH)


def test_risk_group_must_be_exactly_one(
        guideline: Guideline, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rules conclude no risk group, the assessment fails loudly."""
    original = guideline.engine.evaluate

    def without_groups(fact: Any) -> Any:
        return [f for f in original(fact) if f.rule.spec.group is None]

    monkeypatch.setattr(guideline.engine, "evaluate", without_groups)
    with pytest.raises(EvaluationError, match="0 risk groups"):
        guideline.assess(ADULT_PH)


def test_unknown_value_never_satisfies_a_comparison(guideline: Guideline) -> None:
    """Unknown WBC is neither above nor below any threshold; it yields a data item."""
    assessment = guideline.assess({"age_years": 30, "lineage": "B", "ph_status": "negative",
                                   "kmt2a_rearranged": False, "phase": "diagnosis"})
    assert "risk.wbc_b_over_30" not in assessment.ids()
    assert assessment.risk.group.value == "indeterminate"
    assert "data.wbc" in assessment.ids()
    assert assessment.risk.missing == ("wbc_at_diagnosis_10e9_per_l",)


def test_compiled_patterns_always_carry_a_discriminator(guideline: Guideline) -> None:
    """Every pattern tests `t`, so a pattern of absence (`$nex`) cannot match engine state."""
    for rule in guideline.engine.definition.values():
        for pattern in rule["all"]:
            (expr,) = pattern.values()
            assert expr["$and"][0]["t"] in ("patient", "stage", "derived", "prime")


def test_compiled_rules_have_no_python_actions(guideline: Guideline) -> None:
    """No `run` in the definition: no action can swallow an exception or run on a timer."""
    assert all("run" not in rule for rule in guideline.engine.definition.values())
    json.dumps(guideline.engine.definition)


def test_closed_engine_refuses_to_evaluate() -> None:
    """After close(), an evaluation raises instead of touching freed engine memory."""
    own = Guideline.load()
    own.close()
    own.close()
    with pytest.raises(EvaluationError, match="closed"):
        own.assess(ADULT_PH)


def test_module_level_assess_uses_the_shipped_guideline() -> None:
    """all_rules.assess(mapping) works without creating a Guideline."""
    assert assess(ADULT_PH).risk.group.value == "high"


def test_tiny_numbers_reach_the_engine_in_fixed_point(guideline: Guideline) -> None:
    """durable's parser rejects exponents such as 1e-07 (error 204); such values are sent in
    fixed point and compare correctly. (Found by the property tests: MRD 5e-324.)"""
    assessment = guideline.assess({
        "age_years": 30, "age_at_diagnosis_years": 30, "kmt2a_rearranged": False,
        "lineage": "B", "ph_status": "negative",
        "wbc_at_diagnosis_10e9_per_l": 1e-7, "phase": "consolidation", "relapse_count": 0,
        "complete_remission": True, "weeks_to_complete_remission": 3,
        "mrd_end_of_induction_percent": 1e-7, "mrd_consolidation_percent": 5e-324})
    assert assessment.risk.group.value == "standard"
    assert "consolidation.mrd_standard" in assessment.ids()


def test_interruption_between_assert_and_drain_is_survived() -> None:
    """Ctrl-C (or any exception) right after a fact is asserted and before its actions are
    drained propagates; the state is freed without crashing and the next evaluation is right.
    (Run apart on a garbage heap, interrupting the process's first evaluation, which is when
    durable crashes if the state is deleted before an action is started.)"""
    script = textwrap.dedent("""
        import all_rules
        from all_rules.engine._network import Engine
        facts = {"age_years": 40, "lineage": "B", "ph_status": "positive",
                 "wbc_at_diagnosis_10e9_per_l": 45}
        real = Engine._drain
        def interrupted(self, session):
            raise KeyboardInterrupt
        Engine._drain = interrupted
        try:
            all_rules.assess(facts)
        except KeyboardInterrupt:
            print("interrupted")
        Engine._drain = real
        assessment = all_rules.assess(facts)
        assert assessment.risk.group.value == "high"
        assert "ph.tki_required" in assessment.ids()
        print("recovered")
    """)
    result = run_with_garbage_heap(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["interrupted", "recovered"]
