"""Label and field selectors, parsed as kube-apiserver parses `?labelSelector=` and `?fieldSelector=`."""

from __future__ import annotations

import pytest

from kdns.api.selectors import SelectorError, parse_field_selector, parse_label_selector
from kdns.registry import objects

LABELS = {"app": "web", "tier": "front", "version": "3"}

CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("missing!=x", True),
    ("app in (web, db)", True),
    ("app in (db)", False),
    ("app notin (db)", True),
    ("missing notin (db)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("app in (web,db),!legacy", True),
    ("version>2", True),
    ("version<3", False),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_label_selector_matches(text, expected):
    """Each operator of the label selector grammar selects as in Kubernetes."""
    requirements = parse_label_selector(text)
    assert all(r.matches(LABELS) for r in requirements) is expected


@pytest.mark.parametrize("text", ["app=", "=web", "a in (b", "app in ()", "bad key=1", "a=b=c", "version>x"])
def test_label_selector_errors(text):
    """Selectors that kube-apiserver cannot parse are refused."""
    if text == "app=":
        # An empty value is allowed: it matches the empty label value.
        assert parse_label_selector(text)[0].values == ("",)
        return
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_field_selector_on_name_and_namespace():
    """metadata.name and metadata.namespace select with = , == and !=."""
    pod = objects.Pod(meta=objects.ObjectMeta(name="web-1", namespace="default"), document=objects.pack({"status": {"phase": "Running"}}))
    def matches(text):
        return all(r.matches(pod) for r in parse_field_selector(objects.POD, text))
    assert matches("metadata.name=web-1")
    assert matches("metadata.name==web-1,metadata.namespace=default")
    assert not matches("metadata.namespace!=default")
    assert matches("status.phase=Running")


def test_field_selector_unknown_field():
    """A field label the kind does not support is refused, as `field label not supported`."""
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.foo"):
        parse_field_selector(objects.SERVICE, "spec.foo=1")
