"""A fast reader for the plain block YAML that Kubernetes manifests are written in.

PyYAML, even on libyaml, costs about 100 µs per small manifest: 12 s for the 110,000
documents of a big cluster, most of it spent making Python objects for every event and
node. Manifests use little of YAML: block mappings and sequences, one-line plain and
quoted scalars, short flow sequences, comments and `---` between documents; and their
lines repeat (`metadata:`, `  labels:`, `kind: Pod`), and so do whole documents but for
their values (`_Shapes`). `Reader.load_all` reads exactly that subset. Line by line,
each distinct line of a file once, into its shape and its value; a document of a shape
seen before is built from its lines' values by that shape's compiled plan. And such a
document makes a template (`_File._template`), a regex of its text but for its plain
scalars, which reads at once the next documents that are that text but for those
scalars (a workload's pods: most of a cluster's documents), their values for the same
plan. On 10 files of the bench's scale cluster (11,010 documents, a new Reader each
time) that is 5.6 µs of CPU a document, where PyYAML on libyaml takes 111 µs (8.5 µs a
line at a time, with plans); 2.4 µs when the documents a plan would build are left as
their Remakes (`build=False`: a start-up's read, which reads their keys with
`Remake.at` and builds each when it is applied; 6.0 µs a line at a time).
`python bench/startphases.py --readers` measures the three (2026-12-07, a shared host).

Anything else makes it give up on the whole text (None), and the caller has PyYAML read
it, errors and their line numbers included: anchors and aliases, tags, block scalars,
scalars over several lines, escapes in double quotes, flow mappings with content, flow
sequences of anything but one-line scalars, `...` and directives, tabs, carriage returns,
characters YAML does not allow, and anything malformed. What it does return is what
`yaml.load_all(text, Loader=loader)` returns: plain scalars are resolved with the
loader's own implicit resolvers and built by PyYAML's SafeConstructor (so `80` is an
int, `"80"` a string, `yes` True, `~` None), keys are scalars like values, a
duplicate key is left to PyYAML (whose loader may refuse it), and an empty document is
None. No container appears twice in the result, since there are no aliases.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import BaseResolver


class _Unsupported(Exception):
    """The text is not in the subset read here (or is not valid YAML at all)."""


# Characters that make PyYAML's reader refuse a text or that it reads as line breaks or
# whitespace (tab, CR, NEL, LS, PS, BOM): left to PyYAML, like anything unusual.
_UNREAD = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
# The characters of most texts; bytes.translate finds any other at C speed, ten times
# faster than _UNREAD (a third of the reading, otherwise).
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"
# What a plain scalar may not start with (the YAML 1.1 indicators); `-`, `?` and `:`
# may, when a non-space follows.
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
# Characters that end or break a plain scalar in a flow sequence, or need quoting there.
_FLOW_SPECIAL = re.compile(r"[\[\]{}#?'\"]|:(?: |$)")
# `[- ]key: value`, both plain and made of the commonest characters: most distinct lines.
_SIMPLE_LINE = re.compile(r"( *)(?:- +)?([A-Za-z][-\w./]{0,200}): +([A-Za-z0-9][-\w./]*) *")
# Its value part, alone: what follows the `: ` of a line head already read (see _line).
_SIMPLE_VALUE = re.compile(r"[A-Za-z0-9][-\w./]*")
# A plain scalar that a template reads (_File._template): _SIMPLE_VALUE's characters (in
# ASCII), and `@` and `:` (an image, a URL), but not last. No space, quote, `#`, `,` or
# bracket: it ends its line as it is, or is one item of a flow sequence. (Character
# classes, possessive: the regex engine then reads a value with no backtracking.)
_TEMPLATE_CHARS = "-A-Za-z0-9_./@:"
_TEMPLATE_VALUE = rf"[A-Za-z0-9][{_TEMPLATE_CHARS}]*+(?<!:)"
_TEMPLATE_SCALAR = re.compile(_TEMPLATE_VALUE)
# What a template's plain scalar may follow: `- ` indicators, a plain key of
# _SIMPLE_LINE's characters, or both (they and the scalar tokenize apart).
_TEMPLATE_HEAD = re.compile(r" *(?:(?:- +)+(?:[A-Za-z][-\w./]{0,200}: +)?|[A-Za-z][-\w./]{0,200}: +)")
# A line that begins with `---`: a document marker, or a line _token refuses.
_MARKER_LINE = re.compile("^---", re.MULTILINE)
# PyYAML's own implicit resolvers (bool, int, float, null, timestamp, merge, value, yaml)
# match no text with two dots or more: each pattern has at most one `\.`, and no `.`. So
# an IP address or a host name is a string without running them, which is most of the
# cost of a value read once. (Known for these patterns only: a loader with a resolver of
# its own has its scalars go through all of them.)
_STOCK_PATTERNS = frozenset(
    (pattern.pattern, pattern.flags)
    for resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.values()
    for _, pattern in resolvers
)
# PyYAML refuses a key longer than 1024 characters; longer ones are left to it.
_MAX_KEY = 1000

_SKIP = "skip"  # a blank or comment line
_MARKER = "---"  # a document start
# How a token's value is made, each time the line occurs (containers must be new ones).
_SCALAR, _EMPTY, _FLOW_LIST, _FLOW_DICT = range(4)
_NO_KEY = object()  # the token of `- value`: a sequence item, not a mapping entry
# The shape ids of blank or comment lines and of document markers (_Shapes gives the others).
_SKIP_SHAPE, _MARKER_SHAPE, _FIRST_SHAPE = 0, 1, 2
_NO_ROOT = object()
_LINE_BY_LINE = object()
_MISSING = object()

# One line: (columns of its `- ` indicators, column of the key or scalar after them (None
# for a bare `-`), the key (_NO_KEY for a sequence item), how the value is made, value).
Token = tuple[tuple[int, ...], int | None, Any, int, Any]

_Tag = str
_SAFE = SafeConstructor()
_CONSTRUCTORS: Mapping[_Tag, Callable[[yaml.ScalarNode], Any]] = {
    "tag:yaml.org,2002:null": lambda node: None,
    "tag:yaml.org,2002:bool": _SAFE.construct_yaml_bool,
    "tag:yaml.org,2002:int": _SAFE.construct_yaml_int,
    "tag:yaml.org,2002:float": _SAFE.construct_yaml_float,
}


class Reader:
    """Reads texts as `yaml.load_all(text, Loader=loader)` does, for the subset above."""

    def __init__(self, loader: type[BaseResolver]) -> None:
        # The loader's implicit resolvers, by the first character they apply to; a tag
        # without a constructor here (merge keys, values) is left to PyYAML.
        self._resolvers: dict[str, list[tuple[_Tag, re.Pattern[str]]]] = {
            first: list(resolvers) for first, resolvers in loader.yaml_implicit_resolvers.items()
        }
        self._stock = all(
            (pattern.pattern, pattern.flags) in _STOCK_PATTERNS
            for resolvers in self._resolvers.values()
            for _, pattern in resolvers
        )
        self._shapes = _Shapes()
        self._strings = _strings(self._resolvers, self._stock)

    def load_all(self, text: str, remakes: list[Remake | None] | None = None, *, build: bool = True) -> list[Any] | None:
        """Every document of `text`, or None when PyYAML has to read it. With `remakes`,
        one entry is added to it per document: a function that builds that document
        anew (new containers, equal values) when its shape's plan built it, else None.
        With `build` False, a document a plan would build is not built: its entry is
        that Remake (whose `at` reads its scalars without building anything)."""
        try:
            documents, made = _File(self._resolvers, self._stock, self._shapes, self._strings).documents(text, build)
        except _Unsupported:
            return None
        if remakes is not None:
            remakes.extend(made)
        return documents


class _Shapes:
    """What documents of one shape share, across the texts a Reader reads.

    A line's shape is all of its token but the value: its `- ` columns, its key's column,
    the key, and how its value is made. A document's shape is the shapes of its lines, in
    order; the containers built from it, and where each line's value goes in them, follow
    from that alone (values are leaves). So once a shape has been read once, its plan
    (`_plan`) builds the next document of that shape from its lines' values at once,
    without following indentation line by line; and manifests repeat a few shapes (a
    workload's pods differ in names, labels and addresses only).

    Its documents' texts repeat too, but for some values: the templates made of them
    (`_File._template`) read the next ones at once, a few templates to a plan.

    Ids come from a counter and are never given twice, so the tables may be emptied at
    any time (they are, past a bound, for a Reader that reads for ever) and may be shared
    by threads: a plan is only ever found under the shapes it was made from, and a
    template holds its own plan.
    """

    MAX_SHAPES = 100_000
    MAX_PLANS = 1024
    MAX_TEMPLATES = 256
    MAX_VARIANTS = 4  # templates of one plan (documents of one shape that differ in other lines)
    MAX_RECENT = 8  # templates tried on a document, the last used first

    def __init__(self) -> None:
        self.ids: dict[tuple[Any, ...], int] = {}
        # A _Plan; _MISSING after one sighting; _NO_ROOT for a document of no node;
        # _LINE_BY_LINE for one that has no plan.
        self.plans: dict[tuple[int, ...], Any] = {}
        self._next = itertools.count(_FIRST_SHAPE)
        self.templates: dict[str, _Template] = {}  # by their regex's pattern
        self.variants: dict[_Plan, int] = {}  # how many templates were made of a plan's documents
        self.recent: tuple[_Template, ...] = ()

    def id(self, dashes: tuple[int, ...], column: int | None, key: Any, how: int) -> int:
        """The id of the shape of a line (its token but the value)."""
        shape = (dashes, column, key, key.__class__, how)  # (1, 1.0 and True are equal keys, not equal shapes)
        found = self.ids.get(shape)
        if found is None:
            if len(self.ids) >= self.MAX_SHAPES:
                self.ids.clear()
            found = self.ids.setdefault(shape, next(self._next))
        return found

    def remember(self, shape: tuple[int, ...], plan: Any) -> None:
        if len(self.plans) >= self.MAX_PLANS:
            self.plans.clear()
        self.plans[shape] = plan

    def add(self, pattern: str, plan: _Plan, template: _Template) -> None:
        """Keep `template`, made of a document of `plan`'s shape."""
        if len(self.templates) >= self.MAX_TEMPLATES:
            self.templates.clear()
            self.variants.clear()
        self.templates[pattern] = template
        self.variants[plan] = self.variants.get(plan, 0) + 1


# How a template makes a document's line values: of its groups, the groups and the line
# values of the document it read before, and the text's _Plain.
_Values = Callable[[tuple[str | Any, ...], tuple[str | Any, ...], list[Any], "_Plain"], list[Any]]


class _Template:
    """Documents that are the text of one read before but for some plain scalars
    (`_File._template`): `match` reads one at a place in a text, its groups those
    scalars' texts; `values` makes its line values of them, and `plan` (its shape's)
    builds it of those. `groups` and `last` are the groups and the line values of the
    document it was made of."""

    __slots__ = ("groups", "last", "match", "plan", "values")

    def __init__(self, match: Callable[[str, int], re.Match[str] | None], values: _Values, plan: _Plan,
                 groups: tuple[str, ...], last: list[Any]) -> None:
        self.match, self.values, self.plan, self.groups, self.last = match, values, plan, groups, last


class _Run:
    """A template as one text is read with it: its groups and line values are those of
    the last document it read there (at first, of the one it was made of). The next
    document takes the value of a group whose text is the same from them, not anew: so
    equal values of consecutive documents are one object, as those of one text read line
    by line are (a big cluster's documents, kept until they are applied, are smaller)."""

    __slots__ = ("groups", "last", "match", "plan", "template", "values")

    def __init__(self, template: _Template) -> None:
        self.template, self.match, self.values, self.plan = template, template.match, template.values, template.plan
        self.groups, self.last = template.groups, template.last


class _Plain(dict[str, Any]):
    """The value of each plain scalar read in a text, by its text: a missing one is made
    by `make` (_File._scalar, which keeps it here)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[str], Any]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, text: str) -> Any:
        return self.make(text)


class _File:
    """The reading of one text: its distinct lines and plain scalars, each read once."""

    def __init__(
        self, resolvers: dict[str, list[tuple[_Tag, re.Pattern[str]]]], stock: bool, shapes: _Shapes,
        strings: tuple[str, ...],
    ) -> None:
        self._resolvers = resolvers
        self._stock = stock  # they are PyYAML's own: see _STOCK_PATTERNS
        self._shapes = shapes
        self._strings = strings  # (see _strings)
        self._plain = _Plain(self._scalar)
        # The part before `: ` of lines _SIMPLE_LINE matched, e.g. `  name` or `    - ip`:
        # the shape id of any line that has it and a simple value after it.
        self._heads: dict[str, int] = {}
        # The shape id and the value of each distinct line read line by line.
        self._shape_of: dict[str, int] = {}
        self._value_of: dict[str, Any] = {}
        # The token, but the value, of each shape id met in this text.
        self._lines: dict[int, tuple[tuple[int, ...], Any, Any, int]] = {}  # (column: None for a bare `-`)

    def documents(self, text: str, build: bool = True) -> tuple[list[Any], list[Remake | None]]:
        """The documents of `text`, in order, and how to build each anew when a plan can.
        Without `build`, a document a plan can build is its Remake, unbuilt.

        A document that is the text of a template but for the values the template reads
        (most of a big cluster's: `_template`) is read by the template's regex at once;
        the others are read line by line (`_read`)."""
        documents: list[Any] = []
        remakes: list[Remake | None] = []
        shapes = self._shapes
        recent = list(map(_Run, shapes.recent))  # (this text's own: other threads may share the shapes)
        plain = self._plain
        explicit = False  # the document began with `---` (so it counts even if empty)
        start = 0
        try:
            while True:
                for run in recent:
                    match = run.match(text, start)
                    if match is not None:
                        groups = match.groups()
                        run.last = values = run.values(groups, run.groups, run.last, plain)
                        run.groups = groups
                        planned = Remake(run.plan, values)
                        documents.append(planned() if build else planned)
                        remakes.append(planned)
                        if run is not recent[0]:
                            recent.remove(run)
                            recent.insert(0, run)
                        start, explicit = match.end(), True
                        break
                else:
                    # Line by line, up to the next line that begins with `---` (a marker, or
                    # a line _token refuses). Its characters are checked here: a template
                    # reads only characters that were read line by line first.
                    marker = _MARKER_LINE.search(text, start)
                    if marker is None:
                        rest = text[start:]
                        if not _readable(rest):
                            raise _Unsupported("a character PyYAML reads its own way")
                        self._read(rest.split("\n"), explicit, build, documents, remakes)
                        return documents, remakes
                    at = marker.start()
                    newline = text.find("\n", at)
                    if not _readable(text[start:] if newline < 0 else text[start:newline]):
                        raise _Unsupported("a character PyYAML reads its own way")
                    marker_line = text[at:] if newline < 0 else text[at:newline]
                    if marker_line != _MARKER:
                        self._line(marker_line)  # (refused, unless a marker with spaces or a comment)
                    lines = text[start:at - 1].split("\n") if at > start else []
                    followed = newline >= 0 and marker_line == _MARKER  # (a template's own end)
                    made = self._read(lines, explicit, build, documents, remakes, followed)
                    if made is not None:
                        recent = [_Run(made), *(run for run in recent if run.template is not made)][:_Shapes.MAX_RECENT]
                    if newline < 0:  # the text ends with the marker: an empty document after it
                        self._read([], True, build, documents, remakes)
                        return documents, remakes
                    start, explicit = newline + 1, True
        finally:
            shapes.recent = tuple(run.template for run in recent)

    def _read(self, lines: list[str], explicit: bool, build: bool, documents: list[Any],
              remakes: list[Remake | None], followed: bool = False) -> _Template | None:
        """Add the document of `lines` (no marker among them), line by line, to
        `documents`, and how to build it anew to `remakes` (when it is not an empty
        document that no marker began). Each distinct line of the text is read once.
        When it is `followed` by a `---` line and more, and its shape has a plan, the
        document's template (`_template`), which may read the next ones."""
        shape_of, value_of = self._shape_of, self._value_of
        for line in lines:
            if line not in shape_of:
                shape_of[line], value_of[line] = self._line(line)
        shape = tuple(map(shape_of.__getitem__, lines))
        values = list(map(value_of.__getitem__, lines))
        root, remake = self._document(shape, values, build)
        if explicit or root is not _NO_ROOT:
            documents.append(None if root is _NO_ROOT else root)
            remakes.append(remake)
        if remake is None or not followed:
            return None
        return self._template(lines, shape, values, remake.plan)

    def _document(self, shape: tuple[int, ...], values: list[Any], build: bool = True) -> tuple[Any, Remake | None]:
        """The root of the document of `shape` whose line values are `values` (_NO_ROOT
        when it has none): by its plan once the shape is known; and the plan with these
        values, which builds it anew (None when there is no plan). Without `build`, a
        document of a plan is that Remake, not built."""
        shapes = self._shapes
        plan: Any = shapes.plans.get(shape)  # (a _Plan, or one of the markers above)
        if plan is None:  # the first of its shape: read line by line
            shapes.remember(shape, _MISSING)
            return self._build(shape, values), None
        if plan is _MISSING:  # the second: make its plan
            slots = [None if line == _SKIP_SHAPE or self._lines[line][3] == _EMPTY else _Slot(at, self._lines[line][3])
                     for at, line in enumerate(shape)]
            root = self._build(shape, slots)
            plan = _NO_ROOT if root is _NO_ROOT else _plan(root) or _LINE_BY_LINE
            shapes.remember(shape, plan)
        if plan is _NO_ROOT:
            return _NO_ROOT, None
        if plan is _LINE_BY_LINE:
            return self._build(shape, values), None
        remake = Remake(plan, values)
        return (plan.build(values) if build else remake), remake

    def _template(self, lines: list[str], shape: tuple[int, ...], values: list[Any], plan: _Plan) -> _Template | None:
        """The template of the document of `lines`, of `shape` (whose plan is `plan`) and
        with these line `values`, followed by a `---` line and more; None when `plan` has
        as many templates as it may.

        Its regex is the text of the lines and of the `---` after them, but for the
        values it reads: each line that is a plain scalar of _TEMPLATE_VALUE after what
        _TEMPLATE_HEAD matches (`- ` indicators, a plain key, or both), or a flow
        sequence of such scalars (`[a, b]`) after it, has a group for each scalar. A
        document it matches is then one of the same shape: a line with groups is read as
        the line it was made from, but for the values that _scalar makes of them (they
        change neither the key nor the indentation), and the other lines are the same
        lines. A group of a scalar that _scalar leaves as it is matches only the like of
        it (one of `_strings`): its value is its text, not looked up.

        Equal values are one object where it is cheap to see (as they are in a text read
        line by line, which keeps a big cluster's documents smaller until they are
        applied): a group of the same text as in the document read before takes its
        value (see _Run), and one of the same text as an earlier group of the document
        it was made of (a pod's IP, twice) takes that group's when they are the same."""
        groups: list[str] = []  # the scalars this document's groups match
        read: list[tuple[int, int, str, list[str]] | None] = []  # per line, (how, first group, head, scalars)
        for line, line_shape in zip(lines, shape, strict=True):
            how = _EMPTY if line_shape == _SKIP_SHAPE else self._lines[line_shape][3]
            head, items = "", []
            if how == _SCALAR:
                head, _, item = line.rpartition(" ")
                head, items = head + " ", [item]
            elif how == _FLOW_LIST and line.endswith("]"):
                head, _, inside = line[:-1].rpartition("[")
                items = inside.split(", ") if inside else []
            if items and _TEMPLATE_HEAD.fullmatch(head) and all(map(_TEMPLATE_SCALAR.fullmatch, items)):
                read.append((how, len(groups), head, items))
                groups.extend(items)
            else:
                read.append(None)
        twins = {group: groups.index(item) for group, item in enumerate(groups) if groups.index(item) < group}
        parts: list[str] = []
        reads: list[str] = []  # per line, the expression of its value (see _Values)
        constants: dict[str, Any] = {}
        for at, (line, value, fields) in enumerate(zip(lines, values, read, strict=True)):
            if fields is None:
                parts.append(re.escape(line))
                if value is None:
                    reads.append("None")
                else:
                    reads.append(f"c{len(constants)}")
                    constants[reads[-1]] = value
                continue
            how, first, head, items = fields
            patterns, item_reads = [], []
            for number, item in enumerate(items):
                group = first + number
                kind = next((strings for strings in self._strings if re.fullmatch(strings, item)), None)
                patterns.append(f"({_TEMPLATE_VALUE if kind is None else kind})")
                new = f"p[g[{group}]]" if kind is None else f"g[{group}]"
                if group in twins:
                    new = f"x{twins[group]} if g[{group}] == g[{twins[group]}] else {new}"
                last = f"l[{at}]" if how == _SCALAR else f"l[{at}][{number}]"
                name = f"x{group} := " if group in twins.values() else ""
                item_reads.append(f"({name}{last} if g[{group}] == h[{group}] else ({new}))")
            if how == _SCALAR:
                parts.append(re.escape(head) + patterns[0])
                reads.append(item_reads[0])
            else:
                parts.append(re.escape(head) + r"\[" + ", ".join(patterns) + r"\]")
                reads.append("(" + "".join(f"{item_read}, " for item_read in item_reads) + ")")
        pattern = "\n".join([*parts, _MARKER, ""])
        shapes = self._shapes
        template = shapes.templates.get(pattern)
        if template is not None:
            return template
        if shapes.variants.get(plan, 0) >= shapes.MAX_VARIANTS:
            return None
        # One expression, compiled once, as plans are (see _plan): the constants are
        # names in its namespace; its text holds nothing of the document.
        make = eval(compile(f"lambda g, h, l, p: [{', '.join(reads)}]", "<blockyaml template>", "eval"), constants)  # noqa: S307
        template = _Template(re.compile(pattern).match, make, plan, tuple(groups), values)
        shapes.add(pattern, plan, template)
        return template

    def _build(self, shape: tuple[int, ...], values: list[Any]) -> Any:
        """The root of the document of `shape` (no marker in it) whose lines have
        `values`, or _NO_ROOT: line by line. (A value may be a _Slot, which `_value`
        gives back as it is: see _plan.)

        The open containers are a stack of (column, container); `pending` is the
        mapping entry or sequence item whose value has not been seen yet: the next line
        decides whether it is a nested block (a line further right, or a `- ` at the
        key's own column) or null."""
        root: Any = _NO_ROOT
        items: list[Any]  # the sequence a `- ` adds to
        stack: list[tuple[int, Any]] = []
        top_column, top = -1, None  # stack[-1], kept at hand for the common line
        pending: tuple[Any, Any, int] | None = None  # (container, key or index, column)
        lines = self._lines
        for line, value in zip(shape, values, strict=True):
            if line == _SKIP_SHAPE:  # a blank or comment line
                continue
            dashes, column, key, how = lines[line]
            for dash in dashes:
                # A sequence item at `dash`: its value comes after (the rest of the line,
                # or nested lines), so it is pending until then.
                if pending is not None:
                    parent, slot, owner = pending
                    pending = None
                    if dash > owner or (dash == owner and parent.__class__ is dict):
                        items = parent[slot] = []
                        stack.append((dash, items))
                    else:
                        items = _close(stack, dash, list)
                elif not stack:
                    if root is not _NO_ROOT:
                        raise _Unsupported("a second node after the document's root")
                    items = root = []
                    stack.append((dash, items))
                else:
                    items = _close(stack, dash, list)
                items.append(None)
                pending = (items, len(items) - 1, dash)
            if key is _NO_KEY:
                if column is not None:  # `- value`
                    parent, slot, _ = pending  # type: ignore[misc]
                    parent[slot] = _value(how, value)
                    pending = None
                top_column, top = stack[-1]
                continue
            # `key: value` at `column`.
            if pending is not None:
                parent, slot, owner = pending
                pending = None
                if column > owner:
                    top = parent[slot] = {}
                    stack.append((column, top))
                else:
                    top = _close(stack, column, dict)
                top_column = column
            elif top_column != column or top.__class__ is not dict:
                if not stack:
                    if root is not _NO_ROOT:
                        raise _Unsupported("a second node after the document's root")
                    top = root = {}
                    stack.append((column, top))
                else:
                    top = _close(stack, column, dict)
                top_column = column
            if key in top:  # PyYAML words it, with its line (the loader refuses duplicates)
                raise _Unsupported("a duplicate key")
            if how == _SCALAR or value.__class__ is _Slot:
                top[key] = value
            elif how == _EMPTY:
                top[key] = None
                pending = (top, key, column)
            else:
                top[key] = _value(how, value)
        return root

    # --- Lines -------------------------------------------------------------------------

    def _line(self, line: str) -> tuple[int, Any]:
        """(shape id, value) of a line."""
        # The lines that occur once (pod names and IPs) mostly repeat an earlier line's
        # head with another value; then only the value is read.
        head, _, value = line.partition(": ")
        known = self._heads.get(head)
        if known is not None and _SIMPLE_VALUE.fullmatch(value) is not None:
            return known, self._scalar(value)
        return self._tokenize(line)

    def _tokenize(self, line: str) -> tuple[int, Any]:
        """(shape id, value) of a line that `_line` did not find a known head in."""
        token = self._token(line)
        if isinstance(token, str):
            return (_MARKER_SHAPE if token is _MARKER else _SKIP_SHAPE), None
        dashes, column, key, how, value = token
        return self._shape(dashes, column, key, how), value

    def _shape(self, dashes: tuple[int, ...], column: int | None, key: Any, how: int) -> int:
        shape = self._shapes.id(dashes, column, key, how)
        self._lines[shape] = dashes, column, key, how
        return shape

    def _token(self, line: str) -> Token | str:
        simple = _SIMPLE_LINE.fullmatch(line)
        if simple is not None:
            column = len(simple.group(1))
            dashes = (column,) if line[column] == "-" else ()
            key_column = simple.start(2)
            key = self._scalar(simple.group(2))
            # A key of _SIMPLE_LINE has no `:` or space, so `head` ends just before it.
            self._heads[line[:simple.end(2)]] = self._shape(dashes, key_column, key, _SCALAR)
            return dashes, key_column, key, _SCALAR, self._scalar(simple.group(3))
        content = line.lstrip(" ")
        if not content or content[0] == "#":
            return _SKIP
        column = len(line) - len(content)
        if column == 0 and content[0] in "-.%" and (content[0] != "-" or content.startswith("---")):
            after = content[3:]
            if content[0] != "-" or after[:1] not in ("", " ") or after.strip(" ")[:1] not in ("", "#"):
                raise _Unsupported("a document marker with content, `...`, or a directive")
            return _MARKER
        content = content.rstrip(" ")
        dash_columns: list[int] = []
        while content[0] == "-" and (len(content) == 1 or content[1] == " "):
            dash_columns.append(column)
            rest = content[1:].lstrip(" ")
            if not rest or rest[0] == "#":
                return tuple(dash_columns), None, _NO_KEY, _EMPTY, None
            column += len(content) - len(rest)
            content = rest
        entry = self._entry(content)
        if entry is None:
            if not dash_columns:
                raise _Unsupported("a line that is neither a mapping entry nor a sequence item")
            return (tuple(dash_columns), column, _NO_KEY, *self._block_value(content))
        key, rest = entry
        return (tuple(dash_columns), column, key, *self._block_value(rest.lstrip(" ")))

    def _entry(self, content: str) -> tuple[Any, str] | None:
        """(key, the rest after its colon) when `content` is `key: ...`, else None."""
        first = content[0]
        if first == '"' or first == "'":
            end = content.find(first, 1)
            if end < 0 or end > _MAX_KEY:
                raise _Unsupported("a quoted scalar over several lines, or a very long one")
            after = content[end + 1:].lstrip(" ")
            if after[:1] != ":" or after[1:2] not in ("", " "):
                return None  # a quoted scalar, or something _block_value refuses
            return self._quoted(content[:end + 1]), after[1:]
        colon = content.find(":")
        while 0 <= colon < len(content) - 1 and content[colon + 1] != " ":
            colon = content.find(":", colon + 1)  # `a:b` is part of a plain scalar
        if colon < 0:
            return None
        if colon > _MAX_KEY:
            raise _Unsupported("a very long key")
        key = content[:colon].rstrip(" ")
        if not key or " #" in key or not _plain_start(key):
            raise _Unsupported("a key that is not a plain or quoted scalar")
        return self._scalar(key), content[colon + 1:]

    def _block_value(self, text: str) -> tuple[int, Any]:
        """(how, value) for what follows a key or `- `, comments and spaces included."""
        if not text or text[0] == "#":
            return _EMPTY, None
        first = text[0]
        if first == '"' or first == "'":
            return _SCALAR, self._quoted(text)
        if first == "[":
            return _FLOW_LIST, self._flow_sequence(text)
        if first == "{":
            inside, _, rest = text[1:].partition("}")
            if inside.strip(" ") or not _only_comment(rest):
                raise _Unsupported("a flow mapping with content")
            return _FLOW_DICT, None
        if not _plain_start(text):
            raise _Unsupported("an indicator: anchor, alias, tag, block scalar, ...")
        comment = text.find(" #")
        if comment >= 0:
            text = text[:comment].rstrip(" ")
        if ": " in text or text[-1] == ":":
            raise _Unsupported("a mapping in a value")
        return _SCALAR, self._scalar(text)

    def _quoted(self, text: str) -> str:
        """A one-line quoted scalar, with nothing but a comment after it."""
        quote = text[0]
        end = text.find(quote, 1)
        if quote == "'":
            while end >= 0 and text[end + 1:end + 2] == "'":  # '' is a quote
                end = text.find("'", end + 2)
        if end < 0 or not _only_comment(text[end + 1:]):
            raise _Unsupported("a quoted scalar over several lines, or with more after it")
        inside = text[1:end]
        if quote == '"':
            if "\\" in inside:
                raise _Unsupported("an escape sequence")
            return inside
        return inside.replace("''", "'")

    def _flow_sequence(self, text: str) -> tuple[Any, ...]:
        """`[a, "b"]` of plain and quoted scalars, on one line: its items."""
        items: list[Any] = []
        at = 1
        while True:
            while text[at:at + 1] == " ":
                at += 1
            if text[at:at + 1] == "]" and not items:
                at += 1
                break  # []
            first = text[at:at + 1]
            if first == '"' or first == "'":
                end = text.find(first, at + 1)
                if first == "'":
                    while end >= 0 and text[end + 1:end + 2] == "'":
                        end = text.find("'", end + 2)
                if end < 0:
                    raise _Unsupported("a quoted scalar over several lines")
                items.append(self._quoted(text[at:end + 1]))
                at = end + 1
                while text[at:at + 1] == " ":
                    at += 1
            else:
                end = len(text)
                for stop in (",", "]"):
                    found = text.find(stop, at)
                    if 0 <= found < end:
                        end = found
                item = text[at:end].rstrip(" ")
                if not item or not _plain_start(item) or item[0] in "-?:" or _FLOW_SPECIAL.search(item):
                    raise _Unsupported("a flow sequence item that is not a simple scalar")
                items.append(self._scalar(item))
                at = end
            separator = text[at:at + 1]
            at += 1
            if separator == "]":
                break
            if separator != ",":
                raise _Unsupported("a flow sequence over several lines, or not a simple one")
        if not _only_comment(text[at:]):
            raise _Unsupported("a flow sequence with more after it")
        return tuple(items)

    def _scalar(self, text: str) -> Any:
        """A plain scalar's value, as the loader resolves and SafeConstructor builds it."""
        value = self._plain.get(text, _MISSING)
        if value is not _MISSING:
            return value
        value = text
        resolvers = self._resolvers.get(text[0], ())
        if resolvers and self._stock and text.count(".") > 1:
            resolvers = ()  # a string: see _STOCK_PATTERNS
        for tag, pattern in resolvers:
            if pattern.match(text):
                construct = _CONSTRUCTORS.get(tag)
                if construct is None:
                    raise _Unsupported(f"a plain scalar resolved to {tag}")
                try:
                    value = construct(yaml.ScalarNode(tag, text))
                except (ValueError, KeyError, ArithmeticError):  # `0b_`: PyYAML fails on it too, its way
                    raise _Unsupported(f"a {tag} that cannot be built") from None
                break
        self._plain[text] = value
        return value


def _strings(resolvers: Mapping[Any, Any], stock: bool) -> tuple[str, ...]:
    """Regexes of plain scalars of _TEMPLATE_VALUE that _scalar leaves as they are,
    strings: those whose first character no resolver applies to, and with PyYAML's own
    resolvers those with two dots (see _STOCK_PATTERNS), of fewer characters. (Apart, not
    one regex: an alternative costs the regex engine more than the rest of a value.)"""
    firsts = [first for first in sorted(string.ascii_letters + string.digits) if first not in resolvers]
    found = [rf"[{_ranges(firsts)}][{_TEMPLATE_CHARS}]*+(?<!:)"] if firsts else []
    if stock:
        found.append(r"[A-Za-z0-9][-A-Za-z0-9_/@]*+\.[-A-Za-z0-9_/@]*+\.[-A-Za-z0-9_./@]*+")
    return tuple(found)


def _ranges(characters: list[str]) -> str:
    """Sorted `characters` as the ranges of a regex's class, `a-eg-mp-su-xz`: a template
    has a class of them for many of its groups, and the regex compiler takes its time
    over each character of one."""
    runs: list[list[str]] = []
    for character in characters:
        if runs and ord(character) == ord(runs[-1][-1]) + 1:
            runs[-1].append(character)
        else:
            runs.append([character])
    return "".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def _readable(text: str) -> bool:
    """`text` has no character that makes it PyYAML's to read."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return _UNREAD.search(text) is None


def _plain_start(text: str) -> bool:
    """`text` may begin a plain scalar in block context."""
    return text[0] not in _INDICATORS or (text[0] in "-?:" and text[1:2] not in ("", " "))


def _only_comment(text: str) -> bool:
    text = text.lstrip(" ")
    return not text or text[0] == "#"


def _value(how: int, value: Any) -> Any:
    """A token's value for one occurrence of its line: new containers every time."""
    if how == _SCALAR or value.__class__ is _Slot:
        return value
    if how == _FLOW_LIST:
        return list(value)
    if how == _FLOW_DICT:
        return {}
    return None


class _Slot:
    """Where a line's value goes, in the document a plan is made from (`_plan`): the
    line's place in its document, and how its value is made there."""

    __slots__ = ("at", "how")

    def __init__(self, at: int, how: int) -> None:
        self.at, self.how = at, how


class _Plan:
    """How documents of one shape are built from their line values (one per line), new
    containers every time (`build`); and where their scalars are, to read one without
    building anything (`leaves`: the line of the scalar at each path of mapping keys from
    the root; `paths`: every such path the shape has, whatever its value)."""

    __slots__ = ("build", "leaves", "paths")

    def __init__(self, build: Callable[[list[Any]], Any], leaves: dict[tuple[Any, ...], int],
                 paths: frozenset[tuple[Any, ...]]) -> None:
        self.build, self.leaves, self.paths = build, leaves, paths

    def __call__(self, values: list[Any]) -> Any:
        return self.build(values)


# What Remake.at gives for a path the document does not have, and for one whose value
# is not a plain or quoted scalar (a null, a mapping, a sequence).
ABSENT = object()
NOT_SCALAR = object()


class Remake:
    """A document's plan with its values: called, the document anew (new containers, equal
    values). `plan` stands for the document's shape: documents of one plan have the
    same mappings and sequences with the same keys, and differ in scalars only."""

    __slots__ = ("plan", "values")

    def __init__(self, plan: _Plan, values: list[Any]) -> None:
        self.plan, self.values = plan, values

    def __call__(self) -> Any:
        return self.plan.build(self.values)

    def at(self, *path: Any) -> Any:
        """The scalar at `path` (mapping keys from the root), as the built document would
        have it; ABSENT when there is no such path, NOT_SCALAR when its value is no scalar."""
        line = self.plan.leaves.get(path)
        if line is not None:
            return self.values[line]
        return NOT_SCALAR if path in self.plan.paths else ABSENT


# The deepest document a plan is made for (Python's compiler refuses deeper nesting
# than about 200 brackets); deeper ones are read line by line.
_MAX_PLAN_DEPTH = 50


def _plan(root: Any) -> _Plan | None:
    """The plan of a document built from _Slot values; None for one nested too deeply.

    The plan is one expression, a literal of the document's containers whose leaves
    are the line values, `v[3]`, compiled once: Python then builds the containers at
    once (a pod's eleven in 1.4 µs, a tenth of following them line by line). Its text
    holds nothing of the document but line numbers: keys are names bound to the key
    values in the function's own namespace."""
    keys: dict[str, Any] = {}
    try:
        text = _literal(root, keys, 0)
    except RecursionError:
        return None
    build = eval(compile(f"lambda v: {text}", "<blockyaml plan>", "eval"), {"list": list, **keys})  # noqa: S307  (no text of the document: see above)
    leaves: dict[tuple[Any, ...], int] = {}
    paths: set[tuple[Any, ...]] = set()
    _leaves(root, (), leaves, paths)
    return _Plan(build, leaves, frozenset(paths))


def _leaves(node: Any, path: tuple[Any, ...], leaves: dict[tuple[Any, ...], int], paths: set[tuple[Any, ...]]) -> None:
    """The paths of mapping keys under `node` (a document built from _Slot values), and
    the line of each scalar at the end of one."""
    if node.__class__ is not dict:
        return
    for key, value in node.items():
        here = (*path, key)
        paths.add(here)
        if value.__class__ is _Slot and value.how == _SCALAR:
            leaves[here] = value.at
        else:
            _leaves(value, here, leaves, paths)


def _literal(node: Any, keys: dict[str, Any], depth: int) -> str:
    if depth > _MAX_PLAN_DEPTH:
        raise RecursionError("a document nested too deeply for a plan")
    if node.__class__ is dict:
        entries = []
        for key, value in node.items():
            name = f"k{len(keys)}"
            keys[name] = key
            entries.append(f"{name}: {_literal(value, keys, depth + 1)}")
        return "{" + ", ".join(entries) + "}"
    if node.__class__ is list:
        return "[" + ", ".join(_literal(item, keys, depth + 1) for item in node) + "]"
    if node is None:  # a key or `-` with nothing after it
        return "None"
    if node.how == _FLOW_LIST:
        return f"list(v[{node.at}])"
    return "{}" if node.how == _FLOW_DICT else f"v[{node.at}]"


def _close(stack: list[tuple[int, Any]], column: int, kind: type) -> Any:
    """End the nodes that a node at `column` closes; the container it goes in, which
    must be a `kind` (a mapping entry may end a sequence written at its key's column)."""
    while stack and stack[-1][0] > column:
        stack.pop()
    if stack and kind is dict and stack[-1][0] == column and stack[-1][1].__class__ is list:
        stack.pop()
    if not stack or stack[-1][0] != column or stack[-1][1].__class__ is not kind:
        raise _Unsupported("an indentation this reader does not follow")
    return stack[-1][1]
