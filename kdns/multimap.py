"""Multimaps (a dict of sets) whose keys go when their last member does.

The registry's label and owner indexes and the DNS index's PTR tables are such maps:
an emptied set is deleted, so that `key in table` means "has members" and a table of a
churning cluster does not fill up with empty sets.

`add_few` and `discard_few` keep a key's members in a tuple instead, for tables with
a key for almost every member: the DNS index's PTR tables, where an address has one
owner as a rule, and its slices by Service. A set of one costs 216 bytes, a tuple of one 48 (16 MiB over the
100,000 endpoint addresses of the scale cluster, bench/memory.py); adding or taking a
member copies the tuple, which for the few members a key has costs less than hashing
into a set.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

__all__ = ["MANY", "add", "add_few", "add_some", "discard", "discard_few", "discard_some"]

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound=Hashable)
MANY = 16  # add_some: members from which a key's are kept in a set


def add(table: dict[K, set[M]], key: K, member: M) -> bool:
    """Add `member` under `key`; whether the key is new."""
    members = table.get(key)
    if members is None:
        table[key] = {member}
        return True
    members.add(member)
    return False


def discard(table: dict[K, set[M]], key: K, member: M) -> bool:
    """Take `member` out from under `key`; whether that took the key away."""
    members = table.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del table[key]
            return True
    return False


def add_few(table: dict[K, tuple[M, ...]], key: K, member: M) -> bool:
    """`add` for a table of tuples: `member` under `key` (once); whether the key is new."""
    members = table.get(key)
    if members is None:
        table[key] = (member,)
        return True
    if member not in members:
        table[key] = (*members, member)
    return False


def discard_few(table: dict[K, tuple[M, ...]], key: K, member: M) -> bool:
    """`discard` for a table of tuples: `member` out from under `key`; whether that took
    the key away."""
    members = table.get(key)
    if members is None or member not in members:
        return False
    if len(members) == 1:
        del table[key]
        return True
    table[key] = tuple(m for m in members if m != member)
    return False


def add_some(table: dict[K, tuple[M, ...] | set[M]], key: K, member: M) -> bool:
    """`add` for a table of tuples that become sets when they reach `MANY` members."""
    members = table.get(key)
    if members is None:
        table[key] = (member,)
        return True
    if type(members) is tuple:
        if member not in members:
            table[key] = (*members, member) if len(members) < MANY - 1 else {*members, member}
    else:
        members.add(member)  # type: ignore[union-attr]
    return False


def discard_some(table: dict[K, tuple[M, ...] | set[M]], key: K, member: M) -> bool:
    """`discard` for a table `add_some` fills (a set stays one as it shrinks: no key
    changes form back and forth)."""
    members = table.get(key)
    if members is None:
        return False
    if type(members) is tuple:
        return discard_few(table, key, member)  # type: ignore[arg-type]
    members.discard(member)  # type: ignore[union-attr]
    if not members:
        del table[key]
        return True
    return False
