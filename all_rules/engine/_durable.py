"""Loading durable-rules' C module on every supported Python, 3.13 included.

durable-rules 2.0.28 (its last release) is built from source at install time. On Python 3.13
its binding still *references* ``PyEval_CallObject``, which 3.13 removed, so the module
compiles but fails to load: Python loads extension modules with immediate binding
(``RTLD_NOW``), and the symbol cannot be resolved. The reference sits only in the five
callbacks that durable's ``Host`` registers to store and queue messages
(``set_store_message_callback`` and the like). This project drives the C module directly and
never registers a callback (a test pins that), so those functions are never called.

On 3.13 the module is therefore loaded with lazy binding (``RTLD_LAZY``): every symbol the
project calls resolves at once on first use, and the one unresolvable symbol is never reached.
Before it is used, the module is checked to work (tests/engine/test_durable_pitfalls.py and
the whole suite run on 3.11 and 3.13 in CI). docs/engine.md explains the choice and the alternatives
measured. Any other import failure is raised as it is, with what to do.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

MODULE_NAME = "durable_rules_engine"
#: The symbol Python 3.13 removed; durable's callbacks still reference it.
REMOVED_SYMBOL = "PyEval_CallObject"
#: The module's functions that would call the removed symbol; the project never calls them.
CALLBACK_SETTERS = (
    "set_store_message_callback",
    "set_delete_message_callback",
    "set_queue_message_callback",
    "set_get_queued_messages_callback",
    "set_get_idle_state_callback",
)


def _import_lazily() -> ModuleType:
    """Import the C module with lazy symbol binding, restoring the flags afterwards."""
    flags = sys.getdlopenflags()
    sys.setdlopenflags((flags & ~os.RTLD_NOW) | os.RTLD_LAZY)
    try:
        return importlib.import_module(MODULE_NAME)
    finally:
        sys.setdlopenflags(flags)


def load() -> ModuleType:
    """durable-rules' C module, loaded in the way that works on this Python.

    Raises ImportError with the cause and the remedy when it cannot be loaded.
    """
    try:
        return importlib.import_module(MODULE_NAME)
    except ImportError as error:
        if REMOVED_SYMBOL not in str(error):
            raise
        first = error
    try:
        return _import_lazily()
    except ImportError as error:
        raise ImportError(
            f"durable-rules' C module cannot be loaded on Python "
            f"{sys.version_info.major}.{sys.version_info.minor}: it references "
            f"{REMOVED_SYMBOL}, removed in Python 3.13, and lazy binding did not help "
            f"({error}; is LD_BIND_NOW set?). Unset LD_BIND_NOW, or rebuild durable-rules "
            'with CPPFLAGS="-DPyEval_CallObject=PyObject_CallObject" pip install '
            "--no-cache-dir --force-reinstall --no-binary durable-rules durable-rules==2.0.28 "
            "(see docs/engine.md)."
        ) from first


engine = load()
