"""Multimaps (a dict of sets) whose keys go when their last member does.

The registry's label and owner indexes and the DNS index's PTR tables are such maps:
an emptied set is deleted, so that `key in table` means "has members" and a table of a
churning cluster does not fill up with empty sets.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

__all__ = ["add", "discard"]

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound=Hashable)


def add(table: dict[K, set[M]], key: K, member: M) -> None:
    members = table.get(key)
    if members is None:
        table[key] = {member}
    else:
        members.add(member)


def discard(table: dict[K, set[M]], key: K, member: M) -> None:
    members = table.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del table[key]
