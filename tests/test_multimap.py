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


def test_add_some_and_discard_some() -> None:
    """A tuple while a key has fewer than MANY members, a set from then on (also as it
    shrinks), the same members either way; the key goes with its last member."""
    table: dict[str, tuple[int, ...] | set[int]] = {}
    assert multimap.add_some(table, "a", 0)
    assert not multimap.add_some(table, "a", 0)
    for member in range(1, multimap.MANY - 1):
        assert not multimap.add_some(table, "a", member)
    assert table["a"] == tuple(range(multimap.MANY - 1))
    assert not multimap.add_some(table, "a", multimap.MANY - 1)
    assert table["a"] == set(range(multimap.MANY))
    assert multimap.add_some(table, "b", 1)
    assert not multimap.discard_some(table, "b", 2)
    assert multimap.discard_some(table, "b", 1)
    assert not multimap.discard_some(table, "c", 1)
    for member in range(multimap.MANY - 1):
        assert not multimap.discard_some(table, "a", member)
    assert table == {"a": {multimap.MANY - 1}}
    assert multimap.discard_some(table, "a", multimap.MANY - 1)
    assert table == {}
