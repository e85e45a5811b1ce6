"""schema.decode's short way (`_plain`, for documents with nothing to report) gives what
the full reading (`_decode`, which names every unknown field and wrong type) gives."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.registry import schema
from kdns.registry.schema import Decoded, Schema

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False),
                    st.sampled_from(["", "a", "80", "1Gi"]))


def values(of: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a field of schema `of`: mostly of its type, sometimes null, of another
    type, with an unknown field, or a float for an integer."""
    if depth > 4:
        return SCALARS
    if of.type == "object":
        names = sorted(of.properties)
        if not names:
            return st.one_of(st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2), SCALARS)
        # A few of its fields (each of its schema), and at times one it does not know.
        fields = st.lists(st.sampled_from(names), max_size=4, unique=True).flatmap(
            lambda chosen: st.fixed_dictionaries({n: values(of.properties[n], depth + 1) for n in chosen}))
        fitting = st.builds(lambda known, extra: {**known, **extra}, fields,
                            st.dictionaries(st.sampled_from(["zz", "unknownField"]), SCALARS, max_size=1))
        return st.one_of(fields, fields, fields, fields, fitting, SCALARS)
    if of.type in ("array", "map"):
        assert of.items is not None
        items = values(of.items, depth + 1)
        made = st.lists(items, max_size=3) if of.type == "array" else st.dictionaries(st.sampled_from(["a", "b"]), items, max_size=2)
        return st.one_of(made, made, made, SCALARS)
    fitting_scalar = FITTING.get(of.type, SCALARS)
    return st.one_of(fitting_scalar, fitting_scalar, fitting_scalar, fitting_scalar, fitting_scalar, SCALARS)


# Values of each scalar type's own (most of a document's: decoding has nothing to report).
FITTING: dict[str, st.SearchStrategy[Any]] = {
    "string": st.sampled_from(["", "a", "web"]),
    "boolean": st.booleans(),
    "integer": st.one_of(st.integers(0, 3), st.just(2.0)),  # (an integral float is read as the int)
    "int-or-string": st.one_of(st.integers(0, 3), st.just("http")),
    "number": st.one_of(st.integers(0, 3), st.just(0.5)),
    "quantity": st.one_of(st.integers(0, 3), st.just("1Gi")),
}


def reference(document: Any, of: Schema) -> Decoded:
    result = Decoded(None)
    result.document = schema._decode(document, of, "", result)
    return result


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(schema.BY_KIND)).flatmap(
    lambda kind: st.tuples(st.just(kind), values(schema.BY_KIND[kind]))))
def test_the_short_way_decodes_as_the_full_reading(case: tuple[str, Any]) -> None:
    kind, document = case
    decoded, expected = schema.decode(document, schema.BY_KIND[kind]), reference(document, schema.BY_KIND[kind])
    assert decoded == expected
    assert json.dumps(decoded.document) == json.dumps(expected.document)  # (2 and 2.0, key order)


def test_a_clean_pod_takes_the_short_way_and_keeps_its_values() -> None:
    """A pod with nothing to report decodes to an equal document, nulls in declared fields dropped."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}, "generation": 2},
           "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}], "nodeName": None},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}], "conditions": [{"type": "Ready", "status": "True"}]}}
    decoded = schema.decode(pod, schema.BY_KIND["Pod"])
    expected = {**pod, "spec": {"containers": pod["spec"]["containers"]}}
    assert decoded == Decoded(expected) == reference(pod, schema.BY_KIND["Pod"])
    assert json.dumps(decoded.document) == json.dumps(expected)
    wrong = {**pod, "metadata": {"name": "p", "generation": 2.0, "bogus": 1}}
    assert schema.decode(wrong, schema.BY_KIND["Pod"]).unknown == ["metadata.bogus"]
    assert schema.decode(wrong, schema.BY_KIND["Pod"]).document["metadata"]["generation"] == 2
