"""``python -m all_rules.cli``: the same as the ``all-rules`` command."""

import sys

from ._main import main

sys.exit(main())
