"""Bounded memos for the assembly: rendered evidence and items, shared between patients.

Most of an assessment's words recur from patient to patient; a memo keyed by what a piece
reads returns it without rendering again. The memos are bounded so that a cohort's long tail
cannot grow a process without limit, and keyed so that values Python holds equal but the
output prints differently (``1``, ``1.0``, ``True``) never share an entry.
"""

from __future__ import annotations

from typing import Any

#: Entries per evidence memo.
CACHE_LIMIT = 65_536
#: Entries per item (or item skeleton) memo.
ITEM_CACHE_LIMIT = 20_000


class Memo(dict[Any, Any]):
    """A bounded memo for immutable values shared between patients.

    A value is kept only for a key seen before: most rendered items name a patient's own
    continuous values (age, WBC, BSA) and never recur, and admitting them would fill the memo
    and push out the items that do recur. Keys seen once are remembered in a second, equally
    bounded set. Either empties itself when full: no eviction bookkeeping on the hot path.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._seen: set[Any] = set()

    def get_or_make(self, key: Any, make: Any) -> Any:
        found = self.get(key)
        if found is None:
            found = make()
            seen = self._seen
            if key in seen:
                if len(self) >= self.limit:
                    self.clear()
                self[key] = found
            else:
                if len(seen) >= self.limit:
                    seen.clear()
                seen.add(key)
        return found


def typed(value: Any) -> Any:
    """A cache key that keeps 1, 1.0 and True apart (they hash alike but print differently)."""
    return (type(value), value) if not isinstance(value, list) else (list, tuple(value))
