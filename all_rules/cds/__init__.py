"""The CDS Hooks service (needs ``all-rules[serve]``): ``patient-view`` and ``order-sign``.

Owns the ASGI application (``_service``), its settings and services (``_settings``), the
checking steps of a call (``_calls``), JWT authentication and the replay cache (``_auth``),
request and prefetch checking (``_request``), fetching from configured FHIR servers
(``_fetch``), mapping and assessing (``_assess``), the cards of an answer (``_answer``) and the
service's own cards (``_cards``), feedback on issued cards (``_feedback``), the audit line
(``_audit``) and running under uvicorn (``_serve``, behind ``all-rules serve``). It may import
``all_rules.fhir`` (through the names that package exports), ``all_rules.engine``,
``all_rules.ruleset`` and the public face; it imports no other wing and never the command line.
Its log records go to the ``all_rules.cds`` logger. docs/security.md states what it promises.
"""

from ._service import ServiceSettings, create_app

__all__ = ["ServiceSettings", "create_app"]
