"""Engine state: durable's C module, the lock around it, and the session state an engine reuses.

The only module that calls durable. It drives the engine's C module directly, which
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
* a new state is primed (one action started and completed) before anything else, and a state
  cut short between an assert and its drain gets one action started before it is deleted:
  durable crashes deleting a state on which no action was ever started;
* facts are typed by pydantic before they get here; unknown facts are *absent* from the
  engine's fact, and an absent field satisfies no comparison (``_network``);
* every pattern carries a discriminator (``t``), so a test of absence cannot loop
  (``_compile``);
* derived facts are asserted by stage; a negated derived fact is tested only when a stage
  fact arrives after all its producers have fired, so negation sees the final picture
  (``_compile``, ``_network``);
* durable walks its alpha network with a fixed stack of 64 nodes and fails a patient with
  error 303 when the matched and "not exists" children of the nodes on the way fill it: the
  tests of every compiled conjunction are put in one global order, narrowest facts first,
  so the network's first levels are narrow (``_compile.fact_order``; headroom pinned with
  every rule doubled);
* numbers durable's parser would reject (exponents) are written in fixed point (``_encode``);
* engine errors are reported without their text's fact content (durable echoes whole facts);
* after ``fork`` the child gets a new lock (another thread may have held the parent's) and
  each engine, on its first use in the child, a ruleset of its own with no state: the
  parent's may have been mid-evaluation. An ``Engine`` is never copied or pickled (the copy
  would share, and could free, the original's engine); a ``Guideline`` copies as a new one.

``ENGINE_LOCK`` is replaced in a forked child: read it as ``_state.ENGINE_LOCK`` at each use,
never bind it by ``from … import``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.exceptions import EvaluationError

from ._compile import PRIME
from ._durable import engine as _dre
from ._encode import fixed_point

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


def new_sid() -> str:
    """A session id of the engine's own, never a patient's (sids are hashed to 32 bits)."""
    return f"s{next(_ruleset_ids)}"


@attrs.define
class Session:
    """The engine's session state, and whether deleting it is safe yet."""

    sid: str
    state: int | None = None
    action_started: bool = True
    evaluations: int = 0


class EngineState:
    """A compiled ruleset's engine in this process, and its one reusable session state.

    Every method runs under ``ENGINE_LOCK``, held by the caller (``__init__`` and ``close``
    take it themselves)."""

    def __init__(self, name: str, sid: str, definition: Mapping[str, Any]) -> None:
        self._name = name
        self._definition = definition
        self._session = Session(sid)
        self._handle: Any = None
        self._pid = -1
        with ENGINE_LOCK:
            self._create()

    def _create(self) -> None:
        """A new engine ruleset for this process, with no session state yet."""
        self._handle = _dre.create_ruleset(f"{self._name}-{next(_ruleset_ids)}",
                                           fixed_point(self._definition))
        self._session = Session(self._session.sid)
        self._pid = os.getpid()

    def __copy__(self) -> EngineState:
        raise TypeError("an Engine cannot be copied (the copy would share and could free "
                        "its engine); copy the Guideline, which builds a new one")

    def __deepcopy__(self, memo: Any) -> EngineState:
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

    def _ready(self) -> Session:
        """The session to evaluate in; refused once closed (checked under the lock:
        ``close()`` may run in another thread)."""
        if self._handle is None:
            raise EvaluationError("engine is closed")
        if self._pid != os.getpid():
            # Forked: the parent's engine state may have been mid-evaluation in another
            # thread. It is left alone (never freed here), and this process gets its own.
            self._create()
        return self._session

    def _prime(self, session: Session) -> None:
        """Start and finish one action on a new session state before anything else.

        durable never initializes a state's action context (two pointers) when it creates
        the state; the first started action sets them, and ``delete_state`` frees them. A
        state on which no action was ever started (no rule fired for anything asserted
        since its creation) therefore crashes the process when deleted
        (tests/engine/test_durable_pitfalls.py). A dedicated rule fires on a priming fact, which is
        then retracted."""
        prime = f'{{"t":"prime","sid":"{session.sid}","id":"prime"}}'
        self._assert(session, prime)
        if self._drain(session) != [PRIME]:
            raise EvaluationError("rule engine did not run its priming rule")
        code, _ = _dre.retract_fact(self._handle, prime)
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a retraction (code {code})")

    def _free(self, session: Session) -> None:
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
                f"rule engine could not free its session state: {scrub(error)}") from None

    def _assert(self, session: Session, message: str, many: bool = False) -> None:
        """Assert one fact, or with ``many`` a JSON array of facts."""
        function = _dre.assert_facts if many else _dre.assert_fact
        code, state = function(self._handle, message)
        session.state, session.action_started = int(state), False
        # 0: handled; 1: matched no rule. 2 (a fact with this id is already there) would mean
        # a fact left over from an earlier evaluation.
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a fact (code {code})")

    def _retract(self, session: Session, facts: list[str]) -> bool:
        """Retract every fact of this evaluation; the state must then be empty and idle.

        True while the state may serve another evaluation; False once it is due for
        renewal (every ``RENEW_EVERY`` evaluations)."""
        code, _ = _dre.retract_facts(self._handle, "[" + ",".join(facts) + "]")
        if code not in (0, 1):
            raise EvaluationError(f"rule engine refused a retraction (code {code})")
        if _dre.start_action_for_state(self._handle, session.state) is not None:
            session.action_started = True
            raise EvaluationError("rule engine fired a rule while facts were retracted")
        if _dre.get_facts(self._handle, session.sid) != "[]":
            raise EvaluationError("rule engine kept a fact after its retraction")
        session.evaluations += 1
        return session.evaluations < RENEW_EVERY

    def _drain(self, session: Session) -> list[str]:
        """The names of the rules fired since the last drain, each action completed."""
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


def scrub(error: BaseException) -> str:
    """An engine error's text without any fact content (the engine echoes whole facts)."""
    text = str(error)
    return text.split("{", 1)[0].strip() or type(error).__name__
