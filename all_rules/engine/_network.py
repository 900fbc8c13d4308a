"""The compiler onto durable-rules, and the evaluation of one patient.

The only module that imports durable. It drives the engine's C module directly, which
avoids every hazard of ``durable.engine.Host`` measured when the project began (docs/engine.md):

* no ``Host``, hence no timer threads running actions in the background;
* no Python actions at all: a fired rule is read from the message name, so no exception can
  be swallowed inside an action and no action object costs time;
* one process-wide lock around every engine call, and one session state per compiled
  ruleset, used by one evaluation at a time: the 1,024-state limit and 32-bit sid hash
  collisions cannot bite. Creating a state costs more than evaluating a patient (durable
  clears ~8 KiB per beta node), so a state is reused: after each evaluation every fact it
  asserted is retracted, stage facts first (so no negation can fire on the way out), and the
  state is checked empty with no action queued. Any failure, or a state found unclean,
  deletes the state (on every path) and the next evaluation starts a fresh one; a state is
  also renewed every ``RENEW_EVERY`` evaluations, so nothing can accumulate unseen;
* facts are typed by pydantic before they get here; unknown facts are *absent* from the
  engine's fact, and an absent field satisfies no comparison;
* every pattern carries a discriminator (``t``), so a test of absence cannot loop;
* derived facts are asserted by stage; a negated derived fact is tested only when a stage
  fact arrives after all its producers have fired, so negation sees the final picture;
* after ``fork`` the child gets a new lock (another thread may have held the parent's) and
  each engine, on its first use in the child, a ruleset of its own with no state: the
  parent's may have been mid-evaluation. An ``Engine`` is never copied or pickled (the copy
  would share, and could free, the original's engine); a ``Guideline`` copies as a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.exceptions import EvaluationError
from all_rules.ruleset._conditions import Branch, DerivedTest, FactTest, ParamRef, Tolerance
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._loader import Rule, Ruleset
from all_rules.ruleset._schema import Concludes

from ._durable import engine as _dre

#: The C engine keeps process-wide tables and never releases the GIL: one lock for all.
ENGINE_LOCK = threading.RLock()


def _new_lock_after_fork() -> None:
    """In a forked child, a lock some other thread of the parent held stays held forever."""
    global ENGINE_LOCK
    ENGINE_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_after_fork)
_ruleset_ids = itertools.count(1)
#: A reused session state is deleted and created afresh after this many evaluations.
RENEW_EVERY = 10_000
_PRIME = "prime"

_OPS = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def _fixed_point(value: Any) -> str:
    """JSON of plain data with every float in fixed-point notation."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, float):
        text = f"{value:.12f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_fixed_point(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fixed_point(item) for item in value) + "]"
    raise TypeError(f"cannot send {type(value).__name__} to the engine")


#: A str's JSON, as json.dumps(ensure_ascii=False) writes it, without json.dumps' overhead.
json_string: Any = getattr(json.encoder, "c_encode_basestring", None) or \
    json.encoder.py_encode_basestring


def _engine_value(value: Any) -> str:
    """One fact value as JSON the engine can parse: its parser rejects exponents such as
    ``1e-05`` (error 204), which Python writes for floats below 1e-4 or from 1e16, so such
    numbers are written in fixed point (12 places)."""
    kind = type(value)
    if kind is float:
        if value != 0.0 and not 1e-4 <= abs(value) < 1e16:
            if not math.isfinite(value):
                raise EvaluationError("a non-finite number cannot be sent to the engine")
            return _fixed_point(value)
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is str:
        return str(json_string(value))
    raise EvaluationError(f"cannot send a {kind.__name__} to the engine")


def resolve(value: Any, values: Mapping[str, float]) -> Any:
    """A test's value with parameters and tolerances replaced by numbers."""
    if isinstance(value, ParamRef):
        return values[value.name]
    if isinstance(value, Tolerance):
        base = resolve(value.base, values)
        percent = resolve(value.percent, values)
        factor = 1 + percent / 100 if value.direction == "percent_above" else 1 - percent / 100
        return round(base * factor, 6)
    return value


def _fact_expr(test: FactTest, values: Mapping[str, float]) -> dict[str, Any]:
    key = FACTS[test.fact].key
    if test.op == "known":
        return {"$ex" if test.value else "$nex": {key: 1}}
    if test.op == "in":
        return {"$or": [{key: item} for item in test.value]}
    if test.op == "not_in":
        return {"$and": [{"$neq": {key: item}} for item in test.value]}
    value = resolve(test.value, values)
    if test.op == "eq":
        return {key: value}
    return {_OPS[test.op]: {key: value}}


def _derived_expr(test: DerivedTest) -> dict[str, Any]:
    selector = {"name": test.name} if test.name is not None else {"kind": test.kind}
    return {"$and": [{"t": "derived"}, selector]}


def compile_branch(branch: Branch, stage: int, values: Mapping[str, float]) -> dict[str, Any]:
    """One conjunction as one durable rule definition."""
    patterns: list[dict[str, Any]] = []
    fact_tests = [_fact_expr(t, values) for t in branch if isinstance(t, FactTest)]
    if fact_tests:
        patterns.append({"p": {"$and": [{"t": "patient"}, *fact_tests]}})
    derived = [t for t in branch if isinstance(t, DerivedTest)]
    if any(not t.present for t in derived):
        # A negation is only sound once every producer has fired: wait for the stage fact.
        patterns.append({"s": {"$and": [{"t": "stage"}, {"n": stage}]}})
    for index, test in enumerate(derived):
        name = f"d{index}" if test.present else f"n{index}$not"
        patterns.append({name: _derived_expr(test)})
    return {"all": patterns}


@attrs.define
class _Session:
    """The engine's session state, and whether deleting it is safe yet."""

    sid: str
    state: int | None = None
    action_started: bool = True
    evaluations: int = 0


@attrs.frozen
class Fired:
    """A rule that fired, and which branch of its condition matched."""

    rule: Rule
    branch: int


class Engine:
    """A ruleset compiled onto durable-rules; evaluates one patient per call."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        number = next(_ruleset_ids)
        self._session = _Session(f"s{number}")
        # engine rule name → (what fired, the JSON of the fact it derives or None)
        self._entries: dict[str, tuple[Fired, str | None]] = {}
        # The JSON of the fact each deriving rule asserts in this engine's session.
        self._derived_json: dict[str, str] = {}
        definition: dict[str, Any] = {}
        for rule_index, rule in enumerate(ruleset.rules):
            spec = rule.spec
            if spec.concludes is not Concludes.RECOMMENDATION:
                self._derived_json[spec.id] = (
                    f'{{"t":"derived","kind":"{spec.concludes.value}","name":'
                    f'{json.dumps(spec.id)},"sid":"{self._session.sid}",'
                    f'"id":{json.dumps("d:" + spec.id)}}}')
            for branch_index, branch in enumerate(rule.branches):
                name = f"r{rule_index}_{branch_index}"
                definition[name] = compile_branch(branch, rule.stage, ruleset.values)
                self._entries[name] = (Fired(rule, branch_index),
                                       self._derived_json.get(spec.id))
        # Fires once on every new session state; see _prime.
        definition[_PRIME] = {"all": [{"m": {"$and": [{"t": "prime"}]}}]}
        self.definition = definition
        self.stages = max((rule.stage for rule in ruleset.rules), default=0)
        self._stage_facts = tuple(
            f'{{"t":"stage","n":{n},"sid":"{self._session.sid}","id":"stage{n}"}}'
            for n in range(1, self.stages + 1))
        tested = {leaf.fact for rule in ruleset.rules for branch in rule.branches
                  for leaf in branch if isinstance(leaf, FactTest)}
        #: (public name, engine key) of every fact some rule tests; the others are not sent.
        self.tested = tuple(sorted((name, FACTS[name].key) for name in tested))
        self._tested_json = tuple((name, f',"{key}":') for name, key in self.tested)
        self._patient_head = f'{{"t":"patient","sid":"{self._session.sid}","id":"patient"'
        self._handle: Any = None
        self._pid = -1
        with ENGINE_LOCK:
            self._create()

    def _create(self) -> None:
        """A new engine ruleset for this process, with no session state yet."""
        self._handle = _dre.create_ruleset(f"{self.ruleset.name}-{next(_ruleset_ids)}",
                                           _fixed_point(self.definition))
        self._session = _Session(self._session.sid)
        self._pid = os.getpid()

    def __copy__(self) -> Engine:
        raise TypeError("an Engine cannot be copied (the copy would share and could free "
                        "its engine); copy the Guideline, which builds a new one")

    def __deepcopy__(self, memo: Any) -> Engine:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("an Engine cannot be pickled; pickle the Guideline, which is "
                        "rebuilt from its ruleset directory")

    def close(self) -> None:
        """Release the engine's ruleset (idempotent)."""
        with ENGINE_LOCK:
            if self._handle is None:
                return
            if self._pid != os.getpid():  # a forked child: the parent's engine is not ours
                self._handle = None
                return
            try:
                self._free(self._session)
            finally:
                handle, self._handle = self._handle, None
                _dre.delete_ruleset(handle)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the module may be gone
            self.close()

    def evaluate(self, values: Mapping[str, Any]) -> list[Fired]:
        """Every rule branch the patient satisfies, derivations chained by stage.

        ``values``: every fact by public name, ``None`` where unknown; unknown facts are left
        out of the engine's fact, where an absent field satisfies no comparison.
        Raises EvaluationError on any engine failure; never returns a partial result.
        """
        asserted = self._patient_message(values)
        with ENGINE_LOCK:
            if self._handle is None:  # checked under the lock: close() may run in a thread
                raise EvaluationError("engine is closed")
            if self._pid != os.getpid():
                # Forked: the parent's engine state may have been mid-evaluation in another
                # thread. It is left alone (never freed here), and this process gets its own.
                self._create()
            session = self._session
            clean = False
            try:
                if session.state is None:
                    self._prime(session)
                fired: dict[str, Fired] = {}
                derived: list[str] = []
                self._assert(session, _dre.assert_fact, asserted)
                self._settle(session, fired, derived)
                for stage_fact in self._stage_facts:
                    self._assert(session, _dre.assert_fact, stage_fact)
                    self._settle(session, fired, derived)
                # Stage facts first: once they are gone no negation can fire on retraction.
                self._retract(session, [*self._stage_facts, *derived, asserted])
                clean = session.evaluations < RENEW_EVERY
                return list(fired.values())
            except EvaluationError:
                raise
            except Exception as error:
                raise EvaluationError(f"rule engine failed: {type(error).__name__}: "
                                      f"{_scrub(error)}") from None
            finally:
                if not clean:
                    self._free(session)

    def _patient_message(self, values: Mapping[str, Any]) -> str:
        """The patient's engine fact: every tested fact that is known, nothing else."""
        parts = [self._patient_head]
        for name, key in self._tested_json:
            value = values.get(name)
            if value is not None:
                parts.append(key + _engine_value(value))
        parts.append("}")
        return "".join(parts)

    def _prime(self, session: _Session) -> None:
        """Start and finish one action on a new session state before anything else.

        durable never initializes a state's action context (two pointers) when it creates
        the state; the first started action sets them, and ``delete_state`` frees them. A
        state on which no action was ever started (no rule fired for anything asserted
        since its creation) therefore crashes the process when deleted
        (tests/test_durable_pitfalls.py). A dedicated rule fires on a priming fact, which is
        then retracted."""
        prime = f'{{"t":"prime","sid":"{session.sid}","id":"prime"}}'
        self._assert(session, _dre.assert_fact, prime)
        if self._drain(session) != [_PRIME]:
            raise EvaluationError("rule engine did not run its priming rule")
        code, _ = _dre.retract_fact(self._handle, prime)
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a retraction (code {code})")

    def _free(self, session: _Session) -> None:
        """Delete the session's state: after any failure, when it is due for renewal, and
        on close.

        ``delete_state`` frees the state's action context, which only a started action
        initializes (see ``_prime``, which makes sure one was). An evaluation cut short
        between an assert and its drain (an error, Ctrl-C) leaves actions queued: one is
        started first, so the context is one durable itself set.
        """
        if session.state is None:
            return
        state, session.state, session.evaluations = session.state, None, 0
        if not session.action_started:
            with contextlib.suppress(Exception):
                _dre.start_action_for_state(self._handle, state)
        session.action_started = True
        try:
            _dre.delete_state(self._handle, session.sid)
        except Exception as error:  # a leaked state must not pass silently
            raise EvaluationError(
                f"rule engine could not free its session state: {_scrub(error)}") from None

    def _assert(self, session: _Session, function: Any, message: str) -> None:
        code, state = function(self._handle, message)
        session.state, session.action_started = int(state), False
        # 0: handled; 1: matched no rule. 2 (a fact with this id is already there) would mean
        # a fact left over from an earlier evaluation.
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a fact (code {code})")

    def _retract(self, session: _Session, facts: list[str]) -> None:
        """Retract every fact of this evaluation; the state must then be empty and idle."""
        code, _ = _dre.retract_facts(self._handle, "[" + ",".join(facts) + "]")
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a retraction (code {code})")
        if _dre.start_action_for_state(self._handle, session.state) is not None:
            session.action_started = True
            raise EvaluationError("rule engine fired a rule while facts were retracted")
        if _dre.get_facts(self._handle, session.sid) != "[]":
            raise EvaluationError("rule engine kept a fact after its retraction")
        session.evaluations += 1

    def _settle(self, session: _Session, fired: dict[str, Fired], derived: list[str]) -> None:
        """Drain fired rules; assert what they derive; repeat until nothing new fires.

        ``derived`` collects the JSON of every derived fact asserted (one per rule id)."""
        done = set(derived)
        while True:
            new_facts = []
            entries = self._entries
            for name in self._drain(session):
                entry = entries.get(name)
                if entry is None:
                    raise EvaluationError(f"rule engine fired an unknown rule {name!r}")
                fired[name], fact = entry
                if fact is not None and fact not in done:
                    done.add(fact)
                    new_facts.append(fact)
            if not new_facts:
                return
            derived.extend(new_facts)
            self._assert(session, _dre.assert_facts, "[" + ",".join(new_facts) + "]")

    def _drain(self, session: _Session) -> list[str]:
        names = []
        state = session.state
        result = _dre.start_action_for_state(self._handle, state)
        session.action_started = True  # an action is started: deleting the state is safe now
        message = result[1] if result else None
        while message:
            # The message is {"<rule name>":{...}}; the name is all we need.
            names.append(message[2:message.index('"', 2)])
            message = _dre.complete_and_start_action(self._handle, state)
        return names


def _scrub(error: BaseException) -> str:
    """An engine error's text without any fact content (the engine echoes whole facts)."""
    text = str(error)
    return text.split("{", 1)[0].strip() or type(error).__name__
