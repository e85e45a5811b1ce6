"""Static zone files on disk: the reading half of kdns/authority/static.py and zone.py.

The authority parses and serves zones from their text (`Zone.from_text`, `assemble`)
and touches no file; this module, at the edge, lists `*.zone` files in --zones-dir and
reads them. `load_zones` is start-up's (any error stops it); `reload` is SIGHUP's (run
in a worker thread by kdns.app: a file that fails keeps its previous version).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kdns.authority.static import SUFFIX, StaticZones, ZoneError, assemble

__all__ = ["load_zones", "read_files", "reload"]


def _zone_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ZoneError(directory, "not a directory")
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())


def _read(path: Path) -> str | ZoneError:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return ZoneError(path, f"cannot read: {exc}")


def reload(directory: Path, old: StaticZones) -> tuple[StaticZones, list[ZoneError]]:
    """Read `directory` again; a file that fails keeps its old zone, and its error is returned.

    A file that is gone takes its zone with it. If the directory itself cannot be read,
    the old zones stay as they are.
    """
    try:
        paths = _zone_files(Path(directory))
    except ZoneError as exc:
        return old, [exc]
    return assemble(((path, _read(path)) for path in paths), old)


def load_zones(directory: Path) -> StaticZones:
    """Read every `*.zone` file in `directory`; raises ZoneError if any cannot be served."""
    zones, errors = reload(Path(directory), StaticZones())
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ZoneError(directory, "\n".join(str(e) for e in errors))
    return zones


def read_files(paths: Iterable[Path]) -> tuple[StaticZones, list[ZoneError]]:
    """The zones of these files, and the errors of those that cannot be served (`kdns
    validate`, which checks files as start-up would read them)."""
    return assemble(((path, _read(path)) for path in paths), StaticZones())
