"""The API's compact JSON: compact_json writes what json.JSONEncoder(separators=(",", ":")) writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.api.encoding import compact_json

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
_REFERENCE = json.JSONEncoder(separators=(",", ":")).encode


@given(_JSON)
def test_compact_json_is_the_encoders(value: Any) -> None:
    assert compact_json(value) == _REFERENCE(value)


def test_what_json_cannot_write_is_refused_alike() -> None:
    looped: list[Any] = []
    looped.append(looped)
    for value in ({"a": object()}, looped):
        with pytest.raises((TypeError, ValueError)) as mine:
            compact_json(value)
        with pytest.raises((TypeError, ValueError)) as theirs:
            _REFERENCE(value)
        assert (type(mine.value), str(mine.value)) == (type(theirs.value), str(theirs.value))
    assert compact_json({"after": "a refusal"}) == '{"after":"a refusal"}'
