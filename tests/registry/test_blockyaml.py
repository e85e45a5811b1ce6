"""The fast manifest reader returns what PyYAML returns, or leaves the text to PyYAML."""

from __future__ import annotations

import itertools
import math
import re
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.registry import blockyaml
from kdns.registry.blockyaml import ABSENT, NOT_SCALAR, Reader, Remake
from kdns.registry.manifests import _Loader

REPO = Path(__file__).resolve().parents[2]
READER = Reader(_Loader)


def pyyaml(text: str) -> list[Any] | None:
    """PyYAML's documents, or None when PyYAML refuses the text."""
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError:
        return None


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, j) and same(a[k], b[j]) for k, j in zip(a, b, strict=True))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def check(text: str) -> list[Any] | None:
    """The reader's documents, after checking them against PyYAML's. The text is read
    three times, so that each shape of document in it is read line by line, then by the
    plan made for it (and a template made of it), then by that plan again or its
    template (blockyaml._Shapes)."""
    got = READER.load_all(text)
    if got is not None:
        want = pyyaml(text)
        assert want is not None, f"read a text PyYAML refuses: {text!r}"
        assert same(got, want), f"{text!r}: {got!r} != {want!r}"
    for _ in range(2):
        again = READER.load_all(text)
        assert (again is None) == (got is None), f"{text!r}: read once, then not, or the other way"
        assert again is None or same(again, got), f"{text!r} read again: {again!r} != {got!r}"
    return got


def test_reads_the_manifests_of_the_repository():
    files = [p for folder in ("zones", "examples", "tests/fixtures") for p in (REPO / folder).rglob("*.y*ml")]
    files.append(REPO / "compose.yaml")
    read = [p for p in files if check(p.read_text(encoding="utf-8")) is not None]
    assert len(read) >= len(files) // 2  # most are plain block YAML


@pytest.mark.parametrize(
    "text",
    [
        "", "# only a comment\n", "---", "---\n---\n", "a: 1\n---\n", "# c\n---\na: 1", "a: 1\n--- # x\nb: 2\n",
        "  a: 1\n  b: 2", "a:\n- 1\n- 2\nb: 3", "a:\n  - 1\n  - 2\nb: 3", "a: b #c\nd: 'it''s' # x",
        "a: -1\nb: -x\nc: ?x\nd: :x", "a: 0o17\nb: 017\nc: 1_000\nd: 190:20:30\ne: .5\nf: 1e3\ng: 1.0e+3\nh: 0x1F",
        "a: .inf\nb: -.Inf\nc: .NaN\nd: 0b101\ne: +12", "yes: no\non: off\n~: null\nNULL: Null\n80: http",
        "a: 2024-01-01T00:00:00Z\nb: 2024-01-01", "a: {}\nb: []\nc: [ ]\nd: { }", "a: [x, 'y''z', \"w\"] # c",
        "a: [fd00::1, b]", 'a: ["a,b", c]', "a: [1, 2.5, yes, ~, null]", "- - a\n  - b\n- - c", "- a: 1\n  b: 2\n- c",
        "-\n  a: 1\n-\n- x", "a:\n  b:\n    c: d\n  e: f\ng: h", "a:\nb:\n", "- \n- a", "a: b c  d  ", "a: x#y",
        "a: http://x:80/y", "a: 'x: y'", 'a: "x # y"', "a: \"\"\nb: ''", "'a': 1\n\"b c\": 2", "a b: c",
        "a: é\nb: 日本\nc: x\u00a0y", "a: |\n  x\n", "a: >\n  x\n", "a: &x 1\nb: *x", "a: !!str 1", "<<: {a: 1}",
        "a: {b: c}", "a: [b, [c]]", "a: b\n  c", 'a: "b\\n"', "a: 'b\n  c'", "a:\tb", "a: b\r\n", "%YAML 1.1\n---\na: 1",
        "a: 1\n...\n", "a: b: c", "a: b:", "- a\nb: c", "a: 1\n  b: 2", "a:\n  - 1\n  b: 2", "a: [x] y", "a: ['x' y]",
        "a: [x,]", "a: @x", "a: `x`", "a: %x", "? a\n: b", "=: x", "key: value\n key2: value", "\ufeffa: b",
        "a:\n    - b\n    - c\nd: e", "a:\n- b:\n  - c\n  d: e\n- f", "-   a: 1\n    b: 2", "a: -\nb: - c",
        # A line head seen before, then another kind of value after it.
        "a: b\na: b c", "a: b\na: 'c'", "a: b\na: yes", "a: b\na:  c", "a: b\na: c  ", "a: b\na: c # d",
        "a: b\na: c:d", "a: b\na: [c]", "a: b\na:", "- a: b\n- a: 1.5\n- a: 1.2.3", "x:\n  - a: b\n  - a: [c]",
        "a: 10.0.0.1\nb: 1.2.3\nc: 1.2\nd: 1_0.5\ne: -1.2.3\nf: .1.2\ng: 1.2.3e+3",
    ],
)
def test_texts_read_as_pyyaml_reads_them(text):
    check(text)


def test_documents_of_one_shape_are_built_anew_each_time():
    """The third pod of a shape comes from its plan: equal to PyYAML's, and in containers
    of its own (the store may change and empty what it is given)."""
    pod = "kind: Pod\nmetadata:\n  name: web-{0}\n  labels:\n    app: web\nspec:\n  ports: [{0}, 8080]\n  x: {{}}\n"
    text = "---\n".join(pod.format(n) for n in range(4))
    documents = check(text)
    assert documents is not None and [d["metadata"]["name"] for d in documents] == [f"web-{n}" for n in range(4)]
    assert [d["spec"]["ports"] for d in documents] == [[n, 8080] for n in range(4)]
    documents[2]["spec"]["ports"].append(1)
    documents[2]["spec"]["x"]["y"] = 1
    documents[2]["metadata"]["labels"]["app"] = "changed"
    assert documents[3] == pyyaml(text)[3]


def test_keys_that_are_equal_values_of_other_types_are_other_shapes():
    """`1`, `1.0` and `true` are equal dict keys in Python, but not the same key: a plan
    made for one is not used for the others."""
    for keys in (["1", "1.0", "true"], ["true", "1", "1.0"]):
        check("\n---\n".join(f"{key}: a" for key in keys * 3))


def test_a_deep_document_of_a_known_shape_is_read_line_by_line():
    """A document nested deeper than a plan is made for is still read (line by line)."""
    deep = "\n".join(" " * (2 * depth) + f"k{depth}:" for depth in range(80)) + " v"
    assert check("\n---\n".join([deep] * 3)) is not None


def test_the_shapes_are_forgotten_past_their_bound():
    """A Reader that reads for ever keeps a bounded number of plans; reading goes on as before."""
    reader = Reader(_Loader)
    reader._shapes.MAX_PLANS = 3
    for n in range(10):
        text = f"k{n}: a\n---\nk{n}: b\n---\nk{n}: c\n"
        assert reader.load_all(text) == [{f"k{n}": "a"}, {f"k{n}": "b"}, {f"k{n}": "c"}]
        assert len(reader._shapes.plans) <= 3


def test_typical_manifest_is_read_fast():
    text = (REPO / "tests" / "fixtures" / "cluster.yaml").read_text()
    assert check(text) is not None


# Random texts, line by line, from pieces that are both inside and outside the subset.
_WORDS = st.sampled_from([
    "a", "b", "name", "yes", "No", "on", "null", "~", "1", "-1", "0x1f", "017", "1_000", "1.5", ".inf", "1e3",
    "10.0.0.1", "fd00::1", "a b", "a#b", "a:b", "http://x", "-a", "?a", ":a", "<<", "=", "True", "é", "2024-01-01",
])
_VALUES = st.one_of(
    _WORDS,
    _WORDS.map(lambda w: f'"{w}"'),
    _WORDS.map(lambda w: f"'{w}'"),
    st.sampled_from(["", " # c", "[]", "{}", "[a, b]", "['a', \"b\"]", "[a, [b]]", "{a: b}", "|", ">", "&x a", "*x",
                     "!t a", "- a", "a: b", "a:", "'it''s'", '"a\\"b"', "[a,", "x # y", "@a", "a  b", "'a'#c", '"a"#c',
                     "[a]#c", "{}#c", "[a #c]", "['a'#c, b]", "[ a , 'b' ]"]),
)
_LINE = st.tuples(
    st.sampled_from([0, 0, 1, 2, 2, 4, 4, 6]),
    st.sampled_from(["", "", "- ", "-   ", "- - ", "-"]),
    st.one_of(st.tuples(_WORDS, _VALUES).map(lambda kv: f"{kv[0]}: {kv[1]}".rstrip() if kv[1] else f"{kv[0]}:"),
              _VALUES, st.sampled_from(["---", "--- # c", "# comment", "", "...", "--- a"])),
).map(lambda t: " " * t[0] + t[1] + t[2])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_random_texts_read_as_pyyaml_reads_them(lines):
    check("\n".join(lines))


_SCALAR_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)
_DATA = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _SCALAR_TEXT, _WORDS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_WORDS | _SCALAR_TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_WORDS, _DATA, min_size=1, max_size=5), min_size=1, max_size=3),
       st.sampled_from([2, 4]), st.sampled_from([None, False]))
def test_dumped_documents_read_as_pyyaml_reads_them(documents, indent, flow):
    check(yaml.safe_dump_all(documents, indent=indent, default_flow_style=flow, allow_unicode=True, width=10**6))


@st.composite
def block_yaml(draw, depth: int = 0, column: int = 0) -> str:
    """A mapping in block style, as people write them: varied indentation, compact and
    indented sequences, items that are mappings, quoting, comments, blank lines."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(_WORDS)
        shape = draw(st.sampled_from(["scalar", "scalar", "map", "list"] if depth < 3 else ["scalar"]))
        pad = " " * column
        if shape == "scalar":
            lines.append(f"{pad}{key}: {draw(_VALUES)}".rstrip())
        elif shape == "map":
            lines.append(f"{pad}{key}:")
            lines.append(draw(block_yaml(depth + 1, column + draw(st.integers(1, 4)))))
        else:
            lines.append(f"{pad}{key}:" + draw(st.sampled_from(["", " # c"])))
            inner = column + draw(st.sampled_from([0, 2, 4]))
            for _ in range(draw(st.integers(0, 3))):
                gap = draw(st.sampled_from([" ", "   "]))
                if draw(st.booleans()):
                    item = draw(block_yaml(depth + 1, inner + 1 + len(gap)))
                    lines.append(" " * inner + "-" + gap + item.lstrip(" "))
                else:
                    lines.append(" " * inner + "-" + (gap + draw(_VALUES)).rstrip())
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "# comment", "   # indented comment"])))
    return "\n".join(lines)


@settings(max_examples=600, deadline=None)
@given(st.lists(block_yaml(), min_size=1, max_size=3), st.booleans())
def test_block_yaml_reads_as_pyyaml_reads_it(documents, leading_marker):
    check(("---\n" if leading_marker else "") + "\n---\n".join(documents))


# Texts with two dots or more, from the characters of PyYAML's resolvers' patterns.
_DOTTED = st.lists(st.text(st.sampled_from("0123456789._-+:eExXoObBabfinINFaANtTzZ ~<=yYnN"), max_size=6),
                   min_size=3, max_size=5).map(".".join)


@settings(max_examples=3000, deadline=None)
@given(_DOTTED)
def test_no_stock_resolver_matches_two_dots(text):
    """What lets the reader skip the resolvers for `10.0.0.1` (blockyaml._STOCK_PATTERNS)."""
    assert READER._stock
    for resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.values():
        for tag, pattern in resolvers:
            assert not pattern.match(text), (tag, text)
    check(f"a: {text}")


def test_a_resolver_of_the_loaders_own_is_not_skipped():
    class IPLoader(_Loader):
        pass

    IPLoader.add_implicit_resolver("tag:example,2024:ip", re.compile(r"^\d+\.\d+\.\d+\.\d+$"), list("0123456789"))
    reader = Reader(IPLoader)
    assert not reader._stock
    assert reader.load_all("a: 10.0.0.1") is None  # resolved to a tag it leaves to PyYAML
    assert READER.load_all("a: 10.0.0.1") == [{"a": "10.0.0.1"}]


def test_unbuilt_documents_are_their_remakes_and_read_their_scalars_where_the_plan_puts_them():
    """With build=False a document a plan builds is its Remake: called, it is what
    build=True gives; `at` reads a scalar without building, and says when a path is
    absent or holds no scalar."""
    one = "kind: Pod\nmetadata:\n  name: p{n}\n  labels:\n    app: web\n  namespace:\nspec: [a, b]\nn: {n}\n"
    text = "---\n".join(one.format(n=n) for n in range(4))
    reader = Reader(_Loader)
    built, remakes = reader.load_all(text, []), []
    unbuilt = reader.load_all(text, remakes, build=False)
    assert built is not None and unbuilt is not None
    planned = [document for document in unbuilt if isinstance(document, Remake)]
    assert len(planned) >= 2 and planned == [r for r in remakes if r is not None]
    for document, whole in zip(unbuilt, built, strict=True):
        assert same(document() if isinstance(document, Remake) else document, whole)
    last = planned[-1]
    assert (last.at("kind"), last.at("metadata", "name"), last.at("n")) == ("Pod", "p3", 3)
    assert last.at("metadata", "labels", "app") == "web"
    assert last.at("metadata", "labels") is NOT_SCALAR and last.at("spec") is NOT_SCALAR
    assert last.at("metadata", "namespace") is NOT_SCALAR  # (null)
    assert last.at("metadata", "uid") is ABSENT and last.at("kind", "x") is ABSENT


# --- Templates: documents that are the text of one read before but for some values -------

# Values a template may read or not: names, and scalars that resolve to other types or
# are quoted, have spaces, colons or non-ASCII characters; rarely, one outside the subset.
_READ_WORDS = [
    "a", "web-1", "Pod", "v1", "nginx", "yes", "no", "on", "off", "null", "ns-00", "True", "t", "y", "1", "017",
    "0x1f", "1_000", "1.5", "1e3", "10.0.0.1", "1.2.3", "1.2.3e+3", "0.1.2", "10.0.0.1:80", "a:b", "a::b", "x@y",
    "1:20", "190:20:30", "a/b.c_d", "Yes", "NULL", "y.y.y", "n.1.2", "F", "o-1",
]
_OTHER_WORDS = ["-1", ".inf", "é", "aé", "a b", "'a'", '"a"', "[a]", "a#b", "a #b", "", "~", "2024-01-01", "-a", "a,b"]
_REFUSED_WORDS = ["0b_", "a:", "@x", "=", "<<", "a\tb", "a]"]
_TEMPLATE_WORDS = st.sampled_from(_READ_WORDS * 8 + _OTHER_WORDS * 4 + _REFUSED_WORDS)


@st.composite
def skeleton(draw) -> str:
    """A document with a hole (`\\0`) for each plain value: mappings, sequences of
    scalars and of mappings, flow sequences, comments and blank lines."""
    lines: list[str] = []

    def mapping(column: int, depth: int, first: str = "") -> None:
        keys = draw(st.lists(st.sampled_from(["a", "name", "yes", "k-1", "x.y", "n", "1"]), min_size=1, max_size=3,
                             unique=True))
        for number, key in enumerate(keys):
            pad = first if number == 0 and first else " " * column
            kind = draw(st.sampled_from(["value", "value", "flow", "map", "list", "other"] if depth < 2
                                        else ["value", "flow", "other"]))
            if kind == "value":
                lines.append(f"{pad}{key}: \0")
            elif kind == "flow":
                lines.append(f"{pad}{key}: [" + ", ".join(["\0"] * draw(st.integers(1, 3))) + "]")
            elif kind == "other":
                lines.append(pad + key + draw(st.sampled_from([": 'q'", ": {}", ": []", ":", ": a # c", ":  {}"])))
            elif kind == "map":
                lines.append(f"{pad}{key}:")
                mapping(column + draw(st.sampled_from([1, 2, 4])), depth + 1)
            else:
                lines.append(f"{pad}{key}:")
                inner = column + draw(st.sampled_from([0, 2]))
                for _ in range(draw(st.integers(1, 2))):
                    if draw(st.booleans()):
                        lines.append(" " * inner + "- \0")
                    else:
                        mapping(inner + 2, depth + 1, first=" " * inner + "- ")
            if draw(st.integers(0, 5)) == 0:
                lines.append(draw(st.sampled_from(["", "# comment", "  # indented"])))

    mapping(0, 0)
    return "\n".join(lines)


@settings(max_examples=400, deadline=None)
@given(skeleton(), st.lists(st.lists(_TEMPLATE_WORDS, min_size=40, max_size=40), min_size=3, max_size=7),
       st.sampled_from(["", "\n", "\n---\n", "\n---"]))
def test_documents_of_one_template_read_as_pyyaml_reads_them(text, fills, end):
    """Documents of one shape, with other values each (of other kinds too): the third and
    later are read by the template made of the second, or line by line when it does not
    match them, as PyYAML reads them; and so they are unbuilt, as Remakes."""
    parts = text.split("\0")
    documents = "\n---\n".join(
        "".join(part + value for part, value in zip(parts, [*itertools.islice(itertools.cycle(fill), len(parts) - 1), ""],
                                                    strict=True))
        for fill in fills
    ) + end
    reader = Reader(_Loader)
    for _ in range(2):  # (the second time, all of them by templates when they can)
        got = reader.load_all(documents)
        if got is None:
            continue
        want = pyyaml(documents)
        assert want is not None and same(got, want), f"{documents!r}: {got!r} != {want!r}"
        remakes: list[Remake | None] = []
        unbuilt = reader.load_all(documents, remakes, build=False)
        assert unbuilt is not None and len(unbuilt) == len(got)
        for document, whole in zip(unbuilt, got, strict=True):
            if isinstance(document, Remake):
                assert same(document(), whole)
                for path in document.plan.paths:
                    node: Any = whole
                    for key in path:
                        node = node[key]
                    if isinstance(node, dict | list) or node is None:  # (a null: `~`, or nothing at all)
                        assert document.at(*path) is NOT_SCALAR or (node is None and document.at(*path) is None)
                    else:
                        assert same(document.at(*path), node)


def pods(count: int, image: str = "registry.example/app:1.0") -> str:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{n}\n  namespace: ns-{ns}\n  labels:\n    app: web\n"
        "spec:\n  containers:\n    - name: main\n      image: {image}\nstatus:\n  podIP: 10.0.{ns}.{n}\n"
        "  podIPs:\n    - ip: 10.0.{ns}.{n}\n  ports: [{n}, 80]\n  conditions:\n    - type: Ready\n"
        '      status: "True"\n'
    )
    return "---\n".join(pod.format(n=n, ns=n % 3, image=image) for n in range(count))


def test_documents_of_a_template_are_read_at_once(monkeypatch):
    """Of a hundred pods, the first two are read line by line, and the last one (no
    `---` after it); the others by the template made of the second."""
    reader = Reader(_Loader)
    text = pods(100)
    read = []
    original = blockyaml._File._read
    monkeypatch.setattr(blockyaml._File, "_read", lambda self, lines, *rest: read.append(lines) or original(self, lines, *rest))
    assert same(reader.load_all(text), pyyaml(text))
    assert len(read) == 3 and len(reader._shapes.templates) == 1
    read.clear()
    remakes: list[Remake | None] = []
    unbuilt = reader.load_all(text, remakes, build=False)  # (a start-up's read)
    assert len(read) == 1 and unbuilt is not None
    assert all(isinstance(document, Remake) for document in unbuilt) and remakes == unbuilt
    assert [document.at("metadata", "name") for document in unbuilt] == [f"web-{n}" for n in range(100)]
    assert [document.at("metadata", "namespace") for document in unbuilt][:2] == ["ns-0", "ns-1"]
    assert unbuilt[7].at("status", "ports") is NOT_SCALAR and unbuilt[7]()["status"]["ports"] == [7, 80]


def test_a_document_unlike_its_template_is_read_line_by_line():
    """A value a template's group does not read (quoted, or of another kind than the one
    the template was made with), another constant line, a character PyYAML reads its own
    way: each document is read as PyYAML reads it, or the text left to PyYAML."""
    base = pods(6)
    for other in ("name: 'web-9'", "name: yes", "name: 12", "name: web 9", "name: nginx", "name: web-9 # c",
                  "name: web-é", "name: web-9:", "name: web-9 "):
        text = base + "---\n" + pods(1).replace("name: web-0", other) + "---\n" + base
        check(text)
    check(base + "---\n" + pods(1, image="other/app:2.0") + "---\n" + base)
    assert READER.load_all(base + "---\n" + pods(1).replace("name: web-0", "name: web\x07") + "---\n" + base) is None
    assert READER.load_all(base + "---\n" + pods(1).replace("    app: web", "    app:\tweb") + "---\n" + base) is None
    assert READER.load_all(base + "--- # c\x07\n" + base) is None


def test_the_templates_of_a_plan_are_bounded():
    """Documents of one shape that differ in a line no group reads get a few templates,
    then are read line by line."""
    reader = Reader(_Loader)
    text = "---\n".join(pods(3, image=f"'app:{n}'") for n in range(20))
    assert same(reader.load_all(text), pyyaml(text))
    assert len(reader._shapes.templates) == reader._shapes.MAX_VARIANTS
    reader = Reader(_Loader)
    reader._shapes.MAX_TEMPLATES = 2
    assert same(reader.load_all(text), pyyaml(text))
    assert 0 < len(reader._shapes.templates) <= 2


def test_a_templates_string_groups_are_the_scalars_no_resolver_applies_to():
    """A group that is its own value matches only what _scalar leaves a string (its
    first character has no resolver, or, with PyYAML's resolvers, it has two dots)."""
    first, dotted = READER._strings
    for character in string.ascii_letters + string.digits:
        assert (re.fullmatch(first, character + "-a:b") is not None) == (character not in _Loader.yaml_implicit_resolvers)
        assert re.fullmatch(first, character + "a:") is None
    assert re.fullmatch(dotted, "10.0.0.1") and re.fullmatch(dotted, "1.2.3e+3") is None
    for text in ("web-1", "nginx", "10.0.0.1", "y.y.y", "1", "yes", "Pod", "1:20", "a:b", "0.1.2"):
        if any(re.fullmatch(kind, text) for kind in READER._strings):  # (`nginx` is a string too, but looked up)
            assert same(READER.load_all(f"a: {text}"), [{"a": text}]), text
        else:
            assert text in ("nginx", "1", "yes", "1:20"), text
