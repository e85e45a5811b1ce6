"""Multimaps drop a key with its last member, so `key in table` means it has members."""

from __future__ import annotations

from kdns import multimap


def test_add_and_discard() -> None:
    """Members come and go per key; discarding what is not there changes nothing."""
    table: dict[str, set[int]] = {}
    multimap.add(table, "a", 1)
    multimap.add(table, "a", 2)
    multimap.add(table, "b", 1)
    assert table == {"a": {1, 2}, "b": {1}}
    multimap.discard(table, "a", 1)
    multimap.discard(table, "b", 1)
    multimap.discard(table, "b", 1)
    multimap.discard(table, "c", 1)
    assert table == {"a": {2}}
    multimap.discard(table, "a", 2)
    assert table == {}


def test_add_few_and_discard_few() -> None:
    """The same for a table of tuples: each member once, in the order added."""
    table: dict[str, tuple[int, ...]] = {}
    assert multimap.add_few(table, "a", 1)
    assert not multimap.add_few(table, "a", 2)
    assert not multimap.add_few(table, "a", 1)
    assert multimap.add_few(table, "b", 1)
    assert table == {"a": (1, 2), "b": (1,)}
    assert not multimap.discard_few(table, "a", 1)
    assert multimap.discard_few(table, "b", 1)
    assert not multimap.discard_few(table, "b", 1)
    assert not multimap.discard_few(table, "c", 1)
    assert table == {"a": (2,)}
    assert multimap.discard_few(table, "a", 2)
    assert table == {}
