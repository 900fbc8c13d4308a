"""Pins of durable-rules 2.0.28 behaviour (docs/engine.md lists them) that the engine relies on
or guards against. If an upgrade changes one of these, the guard it motivates must be
revisited; these tests say which.

They drive the C module directly, as the engine does. Tests that can corrupt process-wide
engine state (the 1,024-state overflow) run in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from all_rules.engine._durable import engine as dre
from all_rules.engine._state import ENGINE_LOCK

from ..support.heap import needs_glibc, run_with_garbage_heap

_PRIME_RULE = {"all": [{"m": {"t": "prime"}}]}
"""Added to every throwaway ruleset: what `_prime` fires."""


def _fired(handle: int, state: int) -> list[str]:
    names = []
    result = dre.start_action_for_state(handle, state)
    message = result[1] if result else None
    while message:
        names.append(next(iter(json.loads(message))))
        message = dre.complete_and_start_action(handle, state)
    return names


def _prime(handle: int, sid: str) -> None:
    """Create the state of *sid* with one action started and completed, as the engine does:
    durable frees a state's action context on deletion, and only a started action sets it
    (test_deleting_a_state_on_which_no_action_ever_started_crashes). Without this, deleting a
    state on which nothing fired frees garbage, and whether that crashes is luck."""
    prime = json.dumps({"t": "prime", "sid": sid, "id": "prime"})
    _, state = dre.assert_fact(handle, prime)
    assert _fired(handle, state) == ["prime"]
    dre.retract_fact(handle, prime)


@pytest.fixture
def engine() -> Iterator[Any]:
    """A helper that creates throwaway rulesets and asserts facts under the engine lock."""
    handles: list[int] = []
    counter = iter(range(10**9))

    class Helper:
        def ruleset(self, definition: dict[str, Any]) -> int:
            with ENGINE_LOCK:
                handle = dre.create_ruleset(f"pin-{id(handles)}-{len(handles)}",
                                            json.dumps({**definition, "prime": _PRIME_RULE}))
            handles.append(handle)
            return handle

        def assert_fact(self, handle: int, fact: dict[str, Any]) -> list[str]:
            sid = f"pin{next(counter)}"
            with ENGINE_LOCK:
                _prime(handle, sid)
                _, state = dre.assert_fact(handle, json.dumps({**fact, "sid": sid}))
                try:
                    return _fired(handle, state)
                finally:
                    dre.delete_state(handle, sid)

    yield Helper()
    with ENGINE_LOCK:
        for handle in handles:
            dre.delete_ruleset(handle)


def _rule(expr: dict[str, Any]) -> dict[str, Any]:
    return {"all": [{"m": {"$and": [{"t": "p"}, expr]}}]}


def test_missing_field_satisfies_no_comparison(engine: Any) -> None:
    """An absent field matches none of $gt, $lt, $neq: unknown facts are left out, not nulled."""
    handle = engine.ruleset({"gt": _rule({"$gt": {"x": 1}}), "lt": _rule({"$lt": {"x": 1}}),
                             "neq": _rule({"$neq": {"x": 1}}), "nex": _rule({"$nex": {"x": 1}})})
    assert engine.assert_fact(handle, {"t": "p"}) == ["nex"]


def test_type_confusion_strings_and_booleans(engine: Any) -> None:
    """"9" > 65 and "true" == True and 1 == True all match: why facts are typed first and the
    checker refuses ordering tests on strings and booleans."""
    handle = engine.ruleset({"over": _rule({"$gt": {"age": 65}}), "flag": _rule({"f": True})})
    assert engine.assert_fact(handle, {"t": "p", "age": "9"}) == ["over"]
    assert engine.assert_fact(handle, {"t": "p", "f": 1}) == ["flag"]
    assert engine.assert_fact(handle, {"t": "p", "f": "true"}) == ["flag"]


def test_facts_fire_every_matching_rule_events_only_the_first(engine: Any) -> None:
    """assert_fact (what the engine uses) fires every match; a posted event is consumed once."""
    handle = engine.ruleset({"a": _rule({"$gt": {"x": 1}}), "b": _rule({"$gt": {"x": 2}})})
    assert sorted(engine.assert_fact(handle, {"t": "p", "x": 5})) == ["a", "b"]
    with ENGINE_LOCK:
        _prime(handle, "ev")
        _, state = dre.assert_event(handle, json.dumps({"t": "p", "x": 5, "sid": "ev"}))
        try:
            assert len(_fired(handle, state)) == 1
        finally:
            dre.delete_state(handle, "ev")


def test_negation_is_decided_when_the_fact_arrives(engine: Any) -> None:
    """A `none` is not revisited when the negated fact arrives later: why the engine stages
    negations behind a stage fact asserted after all producers have fired."""
    handle = engine.ruleset({
        "no_feature": {"all": [{"m": {"t": "patient"}}, {"n$not": {"t": "feature"}}]},
    })
    with ENGINE_LOCK:
        _prime(handle, "neg")
        _, state = dre.assert_fact(handle, json.dumps({"t": "patient", "sid": "neg"}))
        try:
            assert _fired(handle, state) == ["no_feature"]
            _, state = dre.assert_fact(handle, json.dumps({"t": "feature", "sid": "neg"}))
            assert _fired(handle, state) == []  # too late: it already fired
        finally:
            dre.delete_state(handle, "neg")


def test_colliding_session_ids_share_one_state(engine: Any) -> None:
    """Two sids with the same 32-bit hash share state: why sessions are never keyed by
    patient id and only one is alive at a time."""
    handle = engine.ruleset({"a": _rule({"$gt": {"x": 1}})})
    with ENGINE_LOCK:
        _prime(handle, "PAT0916628")
        dre.assert_fact(handle, json.dumps({"t": "p", "x": 2, "sid": "PAT0916628"}))
        try:
            state = json.loads(dre.get_state(handle, "PAT1054066"))
            assert state["sid"] == "PAT0916628"
        finally:
            dre.delete_state(handle, "PAT0916628")


def test_deleting_an_unknown_state_raises(engine: Any) -> None:
    """delete_state of a sid with no state raises (error 309): the engine deletes only the
    states it created."""
    handle = engine.ruleset({"a": _rule({"$gt": {"x": 1}})})
    with ENGINE_LOCK, pytest.raises(dre.error, match="309"):
        dre.delete_state(handle, "never-created")


def test_unmatched_fact_still_creates_state(engine: Any) -> None:
    """A fact that matches no rule still creates a state: the engine deletes it all the same."""
    handle = engine.ruleset({"a": _rule({"$gt": {"x": 1}})})
    with ENGINE_LOCK:
        code, state = dre.assert_fact(handle, json.dumps({"t": "other", "sid": "unmatched"}))
        assert code == 1
        assert json.loads(dre.get_state(handle, "unmatched"))["sid"] == "unmatched"
        _, primed = dre.assert_fact(handle, json.dumps(
            {"t": "prime", "sid": "unmatched", "id": "prime"}))
        assert primed == state
        assert _fired(handle, state) == ["prime"]
        dre.delete_state(handle, "unmatched")  # would raise 309 had no state been created


def test_state_table_overflows_at_1024_live_sessions() -> None:
    """The 1,025th live session raises MemoryError: why the engine deletes every state in
    `finally` and keeps one alive at a time. (Run apart: the overflow leaks a slot.)"""
    script = textwrap.dedent("""
        import json
        from all_rules.engine._durable import engine as dre
        h = dre.create_ruleset("overflow", json.dumps(
            {"a": {"all": [{"m": {"$and": [{"t": "p"}, {"$gt": {"x": 1}}]}}]}}))
        for i in range(1100):
            try:
                dre.assert_fact(h, json.dumps({"t": "p", "x": 2, "sid": "s%d" % i}))
            except MemoryError:
                print("overflow at", i)
                break
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "overflow at 1024"


def test_the_library_never_starts_durable_host_threads() -> None:
    """durable.engine.Host starts timer threads that run actions in the background and crash
    under concurrency; the library drives the C module and never imports the Host."""
    script = textwrap.dedent("""
        import sys, threading
        import all_rules
        all_rules.assess({"age_years": 30})
        print(sorted(m for m in sys.modules if m.startswith("durable")))
        print(threading.active_count())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")
    assert out[0] == "['durable_rules_engine']"
    assert out[1] == "1"


def test_retraction_and_negation_in_a_reused_state(engine: Any) -> None:
    """What the engine's reuse of one session state relies on: a fact asserted again under an
    id already there is refused with code 2 (how a leftover fact is caught); retracting a fact
    that a negation tests fires the negating rule while its other patterns still hold (why
    stage facts are retracted first); and once everything is retracted the state is empty."""
    handle = engine.ruleset({"gated": {"all": [
        {"s": {"$and": [{"t": "stage"}]}},
        {"n$not": {"$and": [{"t": "derived"}]}}]}})
    stage = json.dumps({"t": "stage", "sid": "reuse", "id": "stage"})
    derived = json.dumps({"t": "derived", "sid": "reuse", "id": "derived"})
    with ENGINE_LOCK:
        _prime(handle, "reuse")
        try:
            code, state = dre.assert_fact(handle, derived)
            assert code in (0, 1)
            assert dre.assert_fact(handle, derived)[0] == 2
            dre.assert_fact(handle, stage)
            assert _fired(handle, state) == []
            dre.retract_fact(handle, derived)  # stage still there: the negation now matches
            assert _fired(handle, state) == ["gated"]
            dre.assert_fact(handle, derived)
            dre.retract_facts(handle, f"[{stage},{derived}]")  # stage first: nothing fires
            assert _fired(handle, state) == []
            assert dre.get_facts(handle, "reuse") == "[]"
            assert dre.assert_fact(handle, derived)[0] != 2  # the id is free again
            dre.retract_fact(handle, derived)
        finally:
            dre.delete_state(handle, "reuse")


_DELETE_AFTER_ASSERT = textwrap.dedent("""
    import json, sys
    from all_rules.engine._durable import engine as dre
    from all_rules import Guideline
    engine = Guideline.default().engine
    guarded = sys.argv[1] == "guarded"
    for i in range(200):
        sid = "s%d" % i
        fact = {"t": "patient", "age_years": 40.0, "phase": "diagnosis", "sid": sid}
        code, state = dre.assert_fact(engine._handle, json.dumps(fact))
        assert code == 0
        if guarded:
            dre.start_action_for_state(engine._handle, state)
        dre.delete_state(engine._handle, sid)
    print("survived")
""")

_DELETE_UNFIRED = textwrap.dedent("""
    import json
    from all_rules.engine._durable import engine as dre
    from all_rules import Guideline
    engine = Guideline.default().engine
    for i in range(50):
        sid = "s%d" % i
        code, state = dre.assert_fact(
            engine._handle, json.dumps({"t": "stage", "n": 1, "sid": sid}))
        assert dre.start_action_for_state(engine._handle, state) is None
        dre.delete_state(engine._handle, sid)
    print("survived")
""")

@needs_glibc
def test_deleting_a_state_with_queued_unstarted_actions_crashes() -> None:
    """Deleting a state right after an assert that queued actions, before any action was
    started, frees an uninitialised pointer (found here, not among the first measurements): why
    the engine starts an action before freeing a session cut short between an assert and its
    drain. The cause is the last test's."""
    result = run_with_garbage_heap(_DELETE_AFTER_ASSERT, "unguarded")
    assert result.returncode < 0, (result.returncode, result.stdout, result.stderr[-300:])
    assert "survived" not in result.stdout


@needs_glibc
def test_starting_an_action_before_deleting_avoids_the_crash() -> None:
    """The guard the engine uses: the same 200 deletions, each after starting an action, survive
    even when every fresh allocation is garbage."""
    result = run_with_garbage_heap(_DELETE_AFTER_ASSERT, "guarded")
    assert (result.returncode, result.stdout.strip()) == (0, "survived"), result.stderr


@needs_glibc
def test_deleting_a_state_on_which_no_action_ever_started_crashes() -> None:
    """The cause (durable's state.c): ``createStateNode`` never initializes a state's action
    context, ``start_action`` sets it, ``delete_state`` frees it. A state on which no action
    was ever started (nothing asserted fired a rule) is deleted by freeing garbage: here a
    stage fact alone, which fires nothing, on the shipped guideline's ruleset. Why the engine
    primes every new state with an action of its own."""
    result = run_with_garbage_heap(_DELETE_UNFIRED)
    assert result.returncode < 0, (result.returncode, result.stdout, result.stderr[-300:])
    assert "survived" not in result.stdout
