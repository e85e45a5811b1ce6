"""Static zones: RFC 1035 zone files served authoritatively beside the cluster zone.

`StaticZones.answer(query)` answers from the zone closest enclosing the name
(kdns/authority/zone.py: what a zone answers, and how its file is parsed), or returns
None for names outside every static zone.

`assemble(files, old)` builds the zones from the files' texts (or the errors reading
them); a file that no longer loads keeps serving its old version from `old`, and the
errors are returned for logging (the SIGHUP path).

This module does not import dnspython (nor kdns.authority.zone, which does): a start
with no zone files serves an empty StaticZones, and dnspython, about a sixth of a
start's imports, is imported when the first zone file is read (`assemble`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from kdns.errors import KdnsError
from kdns.message import CLASS_ANY, CLASS_IN, Answer, Query

if TYPE_CHECKING:
    import dns.name

    from kdns.authority.zone import Zone


class ZoneError(KdnsError):
    """A zone file cannot be served."""

    def __init__(self, path: Path | str, detail: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {detail}")
        self.path = Path(path)
        self.line = line
        self.detail = detail


SUFFIX = ".zone"


class StaticZones:
    """The static zones kdns serves, by origin; immutable once built."""

    __slots__ = ("_by_origin",)

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        by_origin: dict[dns.name.Name, Zone] = {}
        for zone in zones:
            if zone.origin in by_origin:
                raise ZoneError(
                    zone.path, f"zone {zone.origin} is also in {by_origin[zone.origin].path}"
                )
            by_origin[zone.origin] = zone
        self._by_origin: Mapping[dns.name.Name, Zone] = MappingProxyType(by_origin)

    def __len__(self) -> int:
        return len(self._by_origin)

    def __repr__(self) -> str:
        return f"StaticZones({', '.join(self.origins)})"

    @property
    def zones(self) -> tuple[Zone, ...]:
        return tuple(self._by_origin.values())

    @property
    def origins(self) -> tuple[str, ...]:
        """The zones' origins as absolute lower-case text, e.g. `example.test.`."""
        return tuple(sorted(origin.to_text().lower() for origin in self._by_origin))

    def zone_for(self, qname: dns.name.Name) -> Zone | None:
        """The static zone closest enclosing `qname` (a more specific zone wins)."""
        if not self._by_origin:
            return None
        from kdns.authority import zone  # imported already: the zones were read with it

        return zone.closest(self._by_origin, qname)

    def answer(self, query: Query) -> Answer | None:
        """The authoritative answer to `query`, or None if no static zone holds its name."""
        if not self._by_origin or query.qclass not in (CLASS_IN, CLASS_ANY):
            return None
        from kdns.authority import zone  # imported already: the zones were read with it

        return zone.find(self._by_origin, query)


def assemble(files: Iterable[tuple[Path, str | ZoneError]], old: StaticZones) -> tuple[StaticZones, list[ZoneError]]:
    """The zones of `files` (each file's text, or the error reading it), in order; a file
    that fails keeps its zone in `old`, if it had one, and its error is returned. A file
    no longer among `files` takes its zone with it."""
    # dnspython's, imported only once there are zone files to read.
    from kdns.authority.zone import Zone

    previous = {zone.path: zone for zone in old.zones}
    zones: dict[dns.name.Name, Zone] = {}
    errors: list[ZoneError] = []
    for path, text in files:
        zone: Zone | None = None
        if isinstance(text, ZoneError):
            errors.append(text)
        else:
            try:
                zone = Zone.from_text(text, path)
            except ZoneError as exc:
                errors.append(exc)
        if zone is None:
            zone = previous.get(path)
            if zone is None:
                continue
        other = zones.get(zone.origin)
        if other is not None:
            errors.append(ZoneError(path, f"zone {zone.origin} is also in {other.path}; ignored"))
            continue
        zones[zone.origin] = zone
    return StaticZones(zones.values()), errors
