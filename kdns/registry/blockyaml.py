"""A fast reader for the plain block YAML that Kubernetes manifests are written in.

PyYAML, even on libyaml, costs about 100 µs per small manifest: 12 s for the 110,000
documents of a big cluster, most of it spent making Python objects for every event and
node. Manifests use little of YAML: block mappings and sequences, one-line plain and
quoted scalars, short flow sequences, comments and `---` between documents; and their
lines repeat (`metadata:`, `  labels:`, `kind: Pod`). `Reader.load_all` reads exactly
that subset, a line at a time, turning each distinct line of a file into a token once, so
that the rest is putting dicts and lists together: eight times faster.

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

import re
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
# Its value part, alone: what follows the `: ` of a line head already read (see _tokenize).
_SIMPLE_VALUE = re.compile(r"[A-Za-z0-9][-\w./]*")
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
_NO_ROOT = object()
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

    def load_all(self, text: str) -> list[Any] | None:
        """Every document of `text`, or None when PyYAML has to read it."""
        if not _readable(text):
            return None
        try:
            return _File(self._resolvers, self._stock).documents(text)
        except _Unsupported:
            return None


class _File:
    """The reading of one text: its distinct lines and plain scalars, each read once."""

    def __init__(self, resolvers: dict[str, list[tuple[_Tag, re.Pattern[str]]]], stock: bool) -> None:
        self._resolvers = resolvers
        self._stock = stock  # they are PyYAML's own: see _STOCK_PATTERNS
        self._plain: dict[str, Any] = {}
        self._tokens: dict[str, Any] = {}  # a Token, _SKIP or _MARKER per distinct line
        # The part before `: ` of lines _SIMPLE_LINE matched, e.g. `  name` or `    - ip`:
        # (dashes, column, key) of any line that has it and a simple value after it.
        self._heads: dict[str, tuple[tuple[int, ...], int, Any]] = {}

    def documents(self, text: str) -> list[Any]:
        """Build the documents from the lines' tokens.

        The open containers are a stack of (column, container); `pending` is the
        mapping entry or sequence item whose value has not been seen yet: the next line
        decides whether it is a nested block (a line further right, or a `- ` at the
        key's own column) or null."""
        tokens, tokenize = self._tokens, self._tokenize
        documents: list[Any] = []
        explicit = False  # the document began with `---` (so it counts even if empty)
        root: Any = _NO_ROOT
        items: list[Any]  # the sequence a `- ` adds to
        stack: list[tuple[int, Any]] = []
        top_column, top = -1, None  # stack[-1], kept at hand for the common line
        pending: tuple[Any, Any, int] | None = None  # (container, key or index, column)
        for line in text.split("\n"):
            token: Any = tokens.get(line)
            if token is None:
                token = tokens[line] = tokenize(line)
            if token.__class__ is str:
                if token is _MARKER:
                    if explicit or root is not _NO_ROOT:
                        documents.append(None if root is _NO_ROOT else root)
                    explicit, root, stack, top_column, top, pending = True, _NO_ROOT, [], -1, None, None
                continue
            dashes, column, key, how, value = token
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
            if how == _SCALAR:
                top[key] = value
            elif how == _EMPTY:
                top[key] = None
                pending = (top, key, column)
            else:
                top[key] = _value(how, value)
        if explicit or root is not _NO_ROOT:
            documents.append(None if root is _NO_ROOT else root)
        return documents

    # --- Lines -------------------------------------------------------------------------

    def _tokenize(self, line: str) -> Token | str:
        # The lines that occur once (pod names and IPs: a third of the reading) mostly
        # repeat an earlier line's head with another value; then only the value is read.
        head, _, value = line.partition(": ")
        known = self._heads.get(head)
        if known is not None and _SIMPLE_VALUE.fullmatch(value) is not None:
            dashes, column, key = known
            return dashes, column, key, _SCALAR, self._scalar(value)
        simple = _SIMPLE_LINE.fullmatch(line)
        if simple is not None:
            column = len(simple.group(1))
            dashes = (column,) if line[column] == "-" else ()
            key_column = simple.start(2)
            key = self._scalar(simple.group(2))
            # A key of _SIMPLE_LINE has no `:` or space, so `head` ends just before it.
            self._heads[line[:simple.end(2)]] = dashes, key_column, key
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
    if how == _SCALAR:
        return value
    if how == _FLOW_LIST:
        return list(value)
    if how == _FLOW_DICT:
        return {}
    return None


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
