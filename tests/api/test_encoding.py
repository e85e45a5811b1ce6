"""The API's compact JSON (one C encoder made once) writes what json.JSONEncoder writes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.api.encoding import _COMPACT

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_compact_json_is_the_standard_encoders(value: Any) -> None:
    assert _COMPACT(value) == json.JSONEncoder(separators=(",", ":")).encode(value)
