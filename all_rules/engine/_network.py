"""The evaluation of one patient on the compiled rule network.

An ``Engine`` is a ruleset compiled (``_compile``) onto an engine state of its own
(``_state``, the only module that calls durable and the one that lists its hazards). Here
a patient's facts become one engine fact, with unknown facts *absent* (an absent field
satisfies no comparison); fired rules are drained and what they derive is asserted until
nothing new fires, then each stage fact is asserted in turn, so a rule negating a derived
fact sees every producer's result; and every fact asserted is retracted at the end. Any
failure is an ``EvaluationError``, never a partial result, and deletes the session state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from all_rules.exceptions import EvaluationError
from all_rules.ruleset._model import Ruleset

from . import _state
from ._compile import Fired, compile_ruleset
from ._encode import engine_value
from ._state import EngineState, Session, new_sid, scrub

__all__ = ["Engine", "Fired"]


class Engine(EngineState):
    """A ruleset compiled onto durable-rules; evaluates one patient per call."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        sid = new_sid()
        compiled = compile_ruleset(ruleset, sid)
        self.definition = compiled.definition
        self.stages = compiled.stages
        #: (public name, engine key) of every fact some rule tests; the others are not sent.
        self.tested = compiled.tested
        # engine rule name → (what fired, the JSON of the fact it derives or None)
        self._entries = compiled.entries
        self._stage_facts = compiled.stage_facts
        self._tested_json = compiled.tested_json
        self._patient_head = compiled.patient_head
        super().__init__(ruleset.name, sid, self.definition)

    def evaluate(self, values: Mapping[str, Any]) -> list[Fired]:
        """Every rule branch the patient satisfies, derivations chained by stage.

        ``values``: every fact by public name, ``None`` where unknown; unknown facts are left
        out of the engine's fact, where an absent field satisfies no comparison.
        Raises EvaluationError on any engine failure; never returns a partial result.
        """
        asserted = self._patient_message(values)
        with _state.ENGINE_LOCK:  # read at each call: a forked child has a new one
            session = self._ready()
            clean = False
            try:
                if session.state is None:
                    self._prime(session)
                fired: dict[str, Fired] = {}
                derived: list[str] = []
                self._assert(session, asserted)
                self._settle(session, fired, derived)
                for stage_fact in self._stage_facts:
                    self._assert(session, stage_fact)
                    self._settle(session, fired, derived)
                # Stage facts first: once they are gone no negation can fire on retraction.
                clean = self._retract(session, [*self._stage_facts, *derived, asserted])
                return list(fired.values())
            except EvaluationError:
                raise
            except Exception as error:
                raise EvaluationError(f"rule engine failed: {type(error).__name__}: "
                                      f"{scrub(error)}") from None
            finally:
                if not clean:
                    self._free(session)

    def _patient_message(self, values: Mapping[str, Any]) -> str:
        """The patient's engine fact: every tested fact that is known, nothing else."""
        parts = [self._patient_head]
        for name, key in self._tested_json:
            value = values.get(name)
            if value is not None:
                parts.append(key + engine_value(value))
        parts.append("}")
        return "".join(parts)

    def _settle(self, session: Session, fired: dict[str, Fired], derived: list[str]) -> None:
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
            self._assert(session, "[" + ",".join(new_facts) + "]", many=True)
