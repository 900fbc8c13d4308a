"""Shipped guideline versions: the current ruleset and the frozen earlier releases.

The current guideline is ``rulesets/`` (``all_rules/_rulesets`` in a wheel); each earlier
release is a byte-for-byte copy of its files under ``releases/<version>/`` beside it. The
current ruleset's loader reads only the files its manifest lists, so ``releases/`` is never
part of the current guideline (nor of its digest). See docs/diff.md.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import yaml

from all_rules.exceptions import RulesetError

from ._loader import check
from ._model import MANIFEST, default_ruleset_dir

RELEASES = "releases"


class UnknownVersionError(RulesetError, LookupError):
    """A guideline version that this package does not ship."""


@attrs.frozen
class ShippedVersion:
    version: str
    directory: Path
    current: bool


def _manifest_version(directory: Path) -> str | None:
    try:
        data = yaml.safe_load((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if version is not None else None


def shipped_versions(root: Path | None = None) -> list[ShippedVersion]:
    """Every shipped version, the current one first, then the releases newest first.

    A release folder whose manifest names another version than the folder is left out: the
    folder name is what users ask for, and it must not load something else."""
    root = default_ruleset_dir() if root is None else root
    found: list[ShippedVersion] = []
    current = _manifest_version(root)
    if current is not None:
        found.append(ShippedVersion(current, root, True))
    releases = root / RELEASES
    older: list[ShippedVersion] = []
    if releases.is_dir():
        for folder in releases.iterdir():
            if folder.name != current and _manifest_version(folder) == folder.name:
                older.append(ShippedVersion(folder.name, folder, False))
    older.sort(key=lambda v: _version_key(v.version), reverse=True)
    return found + older


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(part), "") if part.isdigit() else (-1, part)
                 for part in version.split("."))


def version_directory(version: str, root: Path | None = None) -> Path:
    """The ruleset directory of a shipped version; UnknownVersionError naming the shipped
    ones otherwise. Only listed names resolve: a version is never used as a path."""
    versions = shipped_versions(root)
    for shipped in versions:
        if shipped.version == version:
            return shipped.directory
    names = ", ".join(v.version for v in versions) or "none"
    raise UnknownVersionError(f"no shipped guideline version {version!r} (shipped: {names})")


def version_digests(root: Path | None = None) -> list[tuple[ShippedVersion, str]]:
    """Each shipped version with its digest (each ruleset is loaded and checked)."""
    out = []
    for shipped in shipped_versions(root):
        ruleset, issues = check(shipped.directory)
        if ruleset is None:
            raise RulesetError(f"shipped version {shipped.version} does not load: "
                               + "; ".join(str(issue) for issue in issues[:3]))
        out.append((shipped, ruleset.digest))
    return out
