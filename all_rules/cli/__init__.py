"""The command line, ``all-rules`` (docs/cli.md).

Owns argument parsing, exit codes and what each command prints (``_main``), the ``explain``
command (``_explain``), the ``diff`` and ``rules versions`` commands (``_diff``), parameter
overrides with their unsafe form and its reason (``_params``) and
``python -m all_rules.cli`` (``__main__``). It is the top of the house: it may import every
wing and the core; nothing imports it.
"""

from ._main import main

__all__ = ["main"]
