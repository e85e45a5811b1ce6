"""Kubernetes documents ⇄ registry objects, and reading documents from YAML files.

`from_manifest` is the one place where a document's typed fields are derived, and where its
values are validated, with the API server's field paths and messages
(k8s.io/apimachinery/pkg/util/validation, pkg/apis/core/validation,
pkg/apis/discovery/validation). It expects a document that admission has already
defaulted; it does not default anything itself, except that a namespaced object without a
namespace is in "default", as kubectl would put it.

Where the API server refuses to decode a document (a string where a number belongs) we
report an Invalid cause on that field instead, so that every problem names its field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from kdns.registry import blockyaml, objects, schema
from kdns.registry.errors import (
    Invalid,
    ManifestError,
    RegistryError,
    duplicate,
    forbidden,
    invalid,
    required,
    too_many,
    unsupported,
)
from kdns.registry.objects import (
    ContainerPort,
    Endpoint,
    EndpointPort,
    Key,
    KubeObject,
    NodeAddress,
    ObjectMeta,
    ObjectReference,
    ServicePort,
)

FILE_SUFFIXES = (".yaml", ".yml", ".json")
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
CONDITION_STATUSES = ("True", "False", "Unknown")
SESSION_AFFINITIES = ("ClientIP", "None")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
IP_FAMILIES = ("IPv4", "IPv6")
TRAFFIC_POLICIES = ("Cluster", "Local")
CLUSTER_IP_NONE = "None"
# pkg/apis/discovery/validation: limits of one EndpointSlice.
MAX_SLICE_ENDPOINTS = 1000
MAX_ENDPOINT_ADDRESSES = 100
MAX_SLICE_PORTS = 20000


# --- Reading documents -------------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader without YAML 1.1 timestamps (`creationTimestamp: 2024-01-01T00:00:00Z`
    stays the string Kubernetes means, not a datetime), refusing duplicate keys as
    strict decoding does, where YAML itself would let the last one win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise DuplicateKey(key_node.value, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping has the same key twice."""

    def __init__(self, key: str, mark: yaml.Mark) -> None:
        super().__init__(None, None, f'duplicate field "{key}"', mark)
        self.key = key


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Reads most manifests several times faster than _Loader, with the same result; what it
# does not read (and every error) is left to _Loader.
_BLOCK_READER = blockyaml.Reader(_Loader)


@dataclass(slots=True)
class Document:
    """One Kubernetes document and where it was read from, so that a later refusal can
    say `zones/web.yaml: document 2: ...`. Immutable by contract (not frozen, which makes
    building one slower: see objects)."""

    source: str  # the file as named to load_paths, or "<input>"
    index: int  # 1-based position of the YAML document in that file
    # A tree of its own: no dict or list in it is anywhere else. UNBUILT when read_paths
    # (load_text's `unbuilt`) read its key without building it: `remake` builds it.
    body: Mapping[str, Any]
    item: int | None = None  # 0-based position in the `items` of a List document
    # key_parts(body), once read_paths has found it (the store then need not read it again).
    key: tuple[str, str, str] | None = None
    # The body kept small, its `body` then left empty, and its apply_order: a start-up
    # load keeps its documents so (a fifth of the memory of their trees) until the store
    # takes each tree in turn (see declared.packer). Either the bytes objects.pack makes
    # of the body, or a function that builds it anew (from `remake`, below).
    packed: bytes | Callable[[], dict[str, Any]] | None = None
    order: int | None = None
    # What the reader can build the body from anew, as it was read (blockyaml.Remake: its
    # shape's plan and its values), when it can: no bigger than the packed bytes, and
    # four times quicker than packing and unpacking the tree.
    remake: blockyaml.Remake | None = None

    def tree(self) -> Mapping[str, Any]:
        """The body; a new tree, the caller's, when the document is kept small."""
        kept = self.packed
        if kept is None:
            if self.body is UNBUILT and self.remake is not None:
                return self.remake()  # type: ignore[no-any-return]
            return self.body
        return objects.unpack(kept) if isinstance(kept, bytes) else kept()

    @property
    def kind(self) -> str:
        if self.key is not None:  # (an UNBUILT body has no kind)
            return self.key[0]
        kind = self.body.get("kind")
        return kind if isinstance(kind, str) else ""

    @property
    def location(self) -> str:
        """`zones/web.yaml: document 2` (`: items[0]` for an item of a List)."""
        where = f"{self.source}: document {self.index}"
        return where if self.item is None else f"{where}: items[{self.item}]"

    def error(self, exc: Exception) -> ManifestError:
        """`exc` as a ManifestError naming this document (already located ones pass through)."""
        if isinstance(exc, ManifestError) and exc.source is not None:
            return exc
        detail = exc.detail if isinstance(exc, ManifestError) else str(exc)
        if self.item is not None:
            detail = f"items[{self.item}]: {detail}"
        return ManifestError(detail, source=self.source, index=self.index)


# The body of a Document that read_paths read without building its tree (`unbuilt`): its
# `remake` builds it, and its `key` is known.
UNBUILT: Mapping[str, Any] = MappingProxyType({})


def load_text(
    text: str, source: str = "<input>", documents: list[Document] | None = None, *, unbuilt: bool = False,
) -> list[Document]:
    """Every document of a YAML (or JSON) stream, with `kind: List` documents expanded into
    their items; empty documents are skipped but still counted, so that `document N`
    is the N-th document of the file. Appended to `documents` when given, as they are
    read: those before a ManifestError are there for a caller that goes on.

    With `unbuilt`, a document the reader's plan can build and whose key (`_planned_key`)
    it reads from the plain scalars where that plan puts them is not built: its body is
    UNBUILT, with its `key` and `remake` (read_paths, which keeps most documents as their
    remakes anyway, then builds a tree only for the first document of each shape)."""
    documents = [] if documents is None else documents
    remakes: list[blockyaml.Remake | None] = []
    read = _BLOCK_READER.load_all(text, remakes, build=not unbuilt)
    if read is not None:
        for index, (body, remake) in enumerate(zip(read, remakes, strict=True), 1):
            if body.__class__ is not blockyaml.Remake:
                _add_document(documents, source, index, body, remake)
                continue
            key = _planned_key(body)  # (an unbuilt document)
            if key is None:
                _add_document(documents, source, index, body(), remake)
            else:
                documents.append(Document(source, index, UNBUILT, None, key, None, None, remake))
        return documents
    # YAML aliases let one dict appear twice in PyYAML's result; copies make every body a
    # tree of its own, which the store may keep and change (apply_documents' `owned`).
    stream = map(copy_tree, yaml.load_all(text, Loader=_Loader))
    index = 0
    while True:
        index += 1
        try:
            body = next(stream)
        except StopIteration:
            break
        except yaml.YAMLError as exc:
            raise ManifestError(_yaml_message(exc), source=source, index=index) from None
        _add_document(documents, source, index, body, None)
    return documents


def _add_document(documents: list[Document], source: str, index: int, body: Any, remake: blockyaml.Remake | None) -> None:
    """Add the `index`-th document of `source` to `documents` (or its items: a List's; not
    an empty one), or refuse it."""
    if body is None:
        return
    if not isinstance(body, dict):
        raise ManifestError(f"must be a mapping, not {_type_name(body)}", source=source, index=index)
    kind = body.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in body:
        items = body.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{kind} items must be a list", source=source, index=index)
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise ManifestError(
                    f"items[{position}]: must be a mapping, not {_type_name(item)}", source=source, index=index
                )
            documents.append(Document(source, index, item, position))
    else:
        documents.append(Document(source, index, body, remake=remake))


def _planned_key(remake: blockyaml.Remake) -> tuple[str, str, str] | None:
    """key_parts of the document `remake` builds, when it is a plain one, read from its
    scalars without building it; None for any other (a kind kdns does not serve, a List,
    a name that is not a string...), which is built and read by key_parts, whose messages
    say what is wrong. Not for a Service, whose apply_order reads its addresses."""
    lines = _KEY_LINES.get(remake.plan)
    if lines is None:
        if len(_KEY_LINES) >= _MAX_SHAPES:
            _KEY_LINES.clear()
        lines = _KEY_LINES[remake.plan] = _key_lines(remake)
    if lines is _NO_KEY_LINES:
        return None
    values = remake.values
    kind_line, version_line, name_line, namespace_line = lines
    kind, name = values[kind_line], values[name_line]
    if kind.__class__ is not str or objects.API_VERSIONS.get(kind) != values[version_line] or kind == objects.SERVICE:
        return None
    if name.__class__ is not str or not name:
        return None
    if kind not in objects.NAMESPACED_KINDS:
        return kind, "", name
    if namespace_line is None:
        return kind, "default", name
    namespace = values[namespace_line]
    return (kind, namespace, name) if namespace.__class__ is str and namespace else None


def _key_lines(remake: blockyaml.Remake) -> tuple[int, int, int, int | None]:
    """Where the documents of `remake`'s plan have their kind, apiVersion, name and
    namespace (None: no namespace), or _NO_KEY_LINES when one is not a scalar there."""
    leaves, paths = remake.plan.leaves, remake.plan.paths
    found = [leaves.get(path) for path in (("kind",), ("apiVersion",), ("metadata", "name"))]
    namespace = leaves.get(("metadata", "namespace"))
    if None in found or (namespace is None and ("metadata", "namespace") in paths):
        return _NO_KEY_LINES
    kind, version, name = found
    assert kind is not None and version is not None and name is not None
    return kind, version, name, namespace


# The lines where documents of each reader's plan (blockyaml.Remake.plan) have their key.
_KEY_LINES: dict[Callable[[list[Any]], Any], tuple[int, int, int, int | None]] = {}
_NO_KEY_LINES = (-1, -1, -1, None)


def read_documents(text: str, source: str = "<input>") -> list[dict[str, Any]]:
    """The document dicts of a YAML (or JSON) stream, List documents expanded."""
    return [dict(document.body) for document in load_text(text, source)]


@dataclass(slots=True)
class Loaded:
    """What read_paths found: the documents to apply, the files they came from, notes
    (skipped kinds, empty files) and every error (each one names its file and document)."""

    documents: list[Document]
    files: list[Path]
    warnings: list[str]
    errors: list[ManifestError]


def manifest_files(path: Path) -> list[Path]:
    """`path` itself, or the *.yaml, *.yml and *.json files under the directory `path`, in
    every subdirectory, in a stable order (by their path's parts); hidden files and
    directories are left out."""
    if not path.is_dir():
        if not path.exists():
            raise ManifestError(f"{path}: no such file or directory")
        return [path]
    found = []
    for file in path.rglob("*"):
        parts = file.relative_to(path).parts
        if file.suffix in FILE_SUFFIXES and not any(part.startswith(".") for part in parts) and file.is_file():
            found.append((parts, file))
    return [file for _, file in sorted(found)]


def read_paths(paths: Iterable[Path | str], keep: Callable[[Document], Document] | None = None) -> Loaded:
    """Read manifest files (each path a file, or a directory read recursively) as strictly
    as the API reads a body: unknown fields and duplicate keys are errors, and so is an
    object declared twice (both places are named). Documents of kinds kdns does not serve
    are left out with a warning; a document of a served kind with an unknown apiVersion is
    an error, because it is almost certainly a typo. Reading goes on after an error, so
    that every problem is reported at once (a file with a YAML error is read no further).
    `keep` makes what is kept of each accepted document with a key, as it is read (so that
    a file's trees are gone before the next file is read)."""
    loaded = Loaded([], [], [], [])
    declared: dict[tuple[str, str, str], Document] = {}
    for path in map(Path, paths):
        try:
            files = manifest_files(path)
        except ManifestError as exc:
            loaded.errors.append(exc)
            continue
        for file in files:
            loaded.files.append(file)
            documents: list[Document] = []
            broken = False
            try:
                load_text(file.read_text(encoding="utf-8"), str(file), documents, unbuilt=keep is not None)
            except (OSError, UnicodeDecodeError) as exc:
                loaded.errors.append(ManifestError(f"{file}: cannot read: {exc}"))
                continue
            except ManifestError as exc:  # the file is read no further; what came before counts
                loaded.errors.append(exc)
                broken = True
            if not documents and not broken:
                loaded.warnings.append(f"{file}: no documents (the file is empty)")
            for document in documents:
                _check_document(document, declared, loaded, keep)
    return loaded


def _check_document(
    document: Document,
    declared: dict[tuple[str, str, str], Document],
    loaded: Loaded,
    keep: Callable[[Document], Document] | None,
) -> None:
    body = document.body
    key = document.key  # (read already: an UNBUILT document's)
    if key is None:
        kind = body.get("kind")
        if isinstance(kind, str) and kind and kind not in objects.API_VERSIONS:
            loaded.warnings.append(f"{document.location}: skipped {kind} ({body.get('apiVersion')}): kdns does not serve this kind")
            return
        try:
            key = key_parts(body)
        except RegistryError:
            loaded.documents.append(document)  # the store refuses it, naming its problem
            return
    remake = document.remake
    unknown: list[str] | None = None
    if remake is not None:  # what strict decoding finds depends on the document's mappings and keys alone
        shape = (remake.plan, key[0])
        unknown = _UNKNOWN_BY_SHAPE.get(shape)
        if unknown is None:
            if len(_UNKNOWN_BY_SHAPE) >= _MAX_SHAPES:
                _UNKNOWN_BY_SHAPE.clear()
            unknown = _UNKNOWN_BY_SHAPE[shape] = schema.unknown_fields(
                remake() if body is UNBUILT else body, schema.BY_KIND[key[0]])
    if unknown is None:
        unknown = schema.unknown_fields(body, schema.BY_KIND[key[0]])
    if unknown:
        problems = ", ".join(f'unknown field "{path}"' for path in unknown)
        loaded.errors.append(document.error(ManifestError(f'{key[0]} "{key[2]}": strict decoding error: {problems}')))
        return
    first = declared.get(key)
    if first is not None:
        loaded.errors.append(document.error(ManifestError(
            f'{key[0]} "{_key_name(key)}" is declared twice: first in {first.location}'
        )))
        return
    # (Not replace: slower. The remake only for `keep`, which may keep it instead of the body.)
    keyed = document if body is UNBUILT else Document(document.source, document.index, body, document.item, key,
                                                      remake=document.remake if keep is not None else None)
    declared[key] = keyed = keyed if keep is None else keep(keyed)
    loaded.documents.append(keyed)


# The unknown fields of documents of a reader's plan (blockyaml.Remake.plan), by kind: a
# tenth of the reading of a big cluster, whose pods share a few plans.
_UNKNOWN_BY_SHAPE: dict[tuple[Callable[[list[Any]], Any], str], list[str]] = {}
_MAX_SHAPES = 1024


def _key_name(key: tuple[str, str, str]) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


def load_paths(paths: Iterable[Path | str]) -> tuple[list[Document], list[str]]:
    """read_paths' documents and warnings; its first error raised, if it found any."""
    loaded = read_paths(paths)
    if loaded.errors:
        raise loaded.errors[0]
    return loaded.documents, loaded.warnings


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, DuplicateKey) and mark is not None:
        return f'line {mark.line + 1}: strict decoding error: duplicate field "{exc.key}"'
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"YAML syntax error: {problem}"


def _type_name(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# --- Kinds, keys and copies --------------------------------------------------------------


def kind_of(doc: Mapping[str, Any]) -> str:
    """The kind of a document kdns serves, or ManifestError (as kubectl words it)."""
    if type(doc) is not dict and not isinstance(doc, Mapping):
        raise ManifestError(f"must be a mapping, not {_type_name(doc)}")
    kind, version = doc.get("kind"), doc.get("apiVersion")
    if not kind or not isinstance(kind, str):
        raise ManifestError("Object 'Kind' is missing")
    if not version or not isinstance(version, str):
        raise ManifestError("Object 'apiVersion' is missing")
    if objects.API_VERSIONS.get(kind) != version:
        raise ManifestError(f'no matches for kind "{kind}" in version "{version}"')
    return kind


def key_of(doc: Mapping[str, Any]) -> Key:
    """Where a document would live in the store: kind, namespace ("default" when a
    namespaced document names none) and name."""
    return Key(*key_parts(doc))


def key_parts(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """key_of(doc) as a plain tuple (kind, namespace, name), for the store's bulk load."""
    kind = kind_of(doc)
    metadata = doc.get("metadata")
    metadata = metadata if type(metadata) is dict or isinstance(metadata, Mapping) else {}
    name = metadata.get("name")
    if not name or not isinstance(name, str):
        raise Invalid(kind, "", [required("metadata.name", "name or generateName is required")])
    if kind not in objects.NAMESPACED_KINDS:
        return kind, "", name
    namespace = metadata.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise Invalid(kind, name, [invalid("metadata.namespace", namespace, "must be a string")])
    return kind, namespace, name


def copy_tree(value: Any) -> Any:
    """A deep copy of JSON-shaped data (mappings become dicts, sequences lists); several
    times faster than copy.deepcopy, which matters for 100,000 pods."""
    kind = type(value)
    # Loops, not comprehensions: a comprehension is a call of its own, a quarter of the
    # copy of a small document (every API write copies one).
    if kind is dict:
        copied = {}
        for k, v in value.items():
            copied[k] = v if type(v) in _SCALARS else copy_tree(v)
        return copied
    if kind is list or kind is tuple:
        items = []
        for v in value:
            items.append(v if type(v) in _SCALARS else copy_tree(v))  # noqa: PERF401
        return items
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: copy_tree(v) for k, v in value.items()}
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


# --- Validation helpers (k8s.io/apimachinery/pkg/util/validation) -----------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"


def _matcher(fmt: str) -> re.Pattern[str]:
    """`fmt` (as the messages quote it) compiled with its groups not capturing: the same
    matches, a fifth quicker (nothing reads the groups; a load checks 100,000 pod names)."""
    return re.compile(fmt.replace("(", "(?:"))


_DNS1123_LABEL_RE = _matcher(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = _matcher(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = _matcher(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = _matcher(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = _matcher(_LABEL_VALUE_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    # validation.RegexError, double space after each example's comma included.
    text = message + " (e.g. " + " or ".join(f"'{e}', " for e in examples)
    return text + "regex used for validation is '" + fmt + "')"


_DNS1123_LABEL_ERROR = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character",
    _DNS1123_LABEL_FMT,
    "my-name",
    "123-abc",
)
_DNS1123_SUBDOMAIN_ERROR = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character",
    _DNS1123_SUBDOMAIN_FMT,
    "example.com",
)
_DNS1035_LABEL_ERROR = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character",
    _DNS1035_LABEL_FMT,
    "my-name",
    "abc-123",
)
_QUALIFIED_NAME_ERROR = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character",
    _QUALIFIED_NAME_FMT,
    "MyName",
    "my.name",
    "123-abc",
)
_LABEL_VALUE_ERROR = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character",
    _LABEL_VALUE_FMT,
    "MyValue",
    "my_value",
    "12345",
)
PORT_RANGE_ERROR = "must be between 1 and 65535, inclusive"
IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


@lru_cache(maxsize=16384)
def dns1123_label(value: str) -> tuple[str, ...]:
    """validation.IsDNS1123Label: the problems with `value`, () when it is valid."""
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errors.append(_DNS1123_LABEL_ERROR)
    return tuple(errors)


def dns1123_subdomain(value: str) -> tuple[str, ...]:
    """validation.IsDNS1123Subdomain."""
    errors = []
    if len(value) > 253:
        errors.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_DNS1123_SUBDOMAIN_ERROR)
    return tuple(errors)


def dns1035_label(value: str) -> tuple[str, ...]:
    """validation.IsDNS1035Label: what Service names must be, being DNS labels."""
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errors.append(_DNS1035_LABEL_ERROR)
    return tuple(errors)


@lru_cache(maxsize=16384)
def qualified_name(value: str) -> tuple[str, ...]:
    """validation.IsQualifiedName: a label or annotation key, `[prefix/]name`."""
    errors = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return (
            "a qualified name "
            + _QUALIFIED_NAME_ERROR
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_len(63))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append("name part " + _QUALIFIED_NAME_ERROR)
    return tuple(errors)


@lru_cache(maxsize=16384)
def label_value(value: str) -> tuple[str, ...]:
    """validation.IsValidLabelValue."""
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_LABEL_VALUE_ERROR)
    return tuple(errors)


@lru_cache(maxsize=4096)
def port_name(value: str) -> tuple[str, ...]:
    """validation.IsValidPortName: an IANA_SVC_NAME, as container ports and targetPorts use."""
    errors = []
    if len(value) > 15:
        errors.append(_max_len(15))
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not any("a" <= c <= "z" for c in value):
        errors.append("must contain at least one letter (a-z)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errors.append("must not begin or end with a hyphen")
    return tuple(errors)


# Four decimal octets, 0 to 255, without leading zeros (which ipaddress refuses too, as
# ambiguous octal). The commonest first: the same matches, a fifth quicker on pod addresses.
_OCTET = "(?:1[0-9][0-9]|[1-9]?[0-9]|2[0-4][0-9]|25[0-5])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def ip_family(text: str) -> str | None:
    """"IPv4" or "IPv6" for a valid address (no zone index), else None."""
    if ":" not in text:
        # The common case, without ipaddress (which is slow).
        return "IPv4" if _IPV4_RE.fullmatch(text) else None
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return None if "%" in text else "IPv6"


class _Checker:
    """Collects the causes of an Invalid while a document is read, so that one refusal lists
    every problem, as the API server does."""

    __slots__ = ("causes",)

    def __init__(self) -> None:
        self.causes: list[tuple[str, str]] = []

    def add(self, cause: tuple[str, str]) -> None:
        self.causes.append(cause)

    def messages(self, path: str, value: Any, messages: Iterable[str]) -> None:
        for message in messages:
            self.causes.append(invalid(path, value, message))

    def mapping(self, value: Any, path: str) -> Mapping[Any, Any]:  # (YAML keys may be anything)
        if type(value) is dict:
            return value
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return value
        self.add(invalid(path, value, "must be an object"))
        return {}

    def sequence(self, value: Any, path: str) -> list[Any]:
        if type(value) is list:
            return value
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.add(invalid(path, value, "must be a list"))
        return []

    def string(self, value: Any, path: str) -> str:
        if type(value) is str:
            return value
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        self.add(invalid(path, value, "must be a string"))
        return ""

    def integer(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.add(invalid(path, value, "must be an integer"))
        return None

    def boolean(self, value: Any, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        self.add(invalid(path, value, "must be a boolean"))
        return None

    def enum(self, value: Any, path: str, choices: Iterable[str]) -> str:
        text = self.string(value, path)
        if text and text not in choices:
            self.add(unsupported(path, text, choices))
        return text

    def port(self, value: Any, path: str) -> int | None:
        number = self.integer(value, path)
        if number is not None and not 1 <= number <= 65535:
            self.add(invalid(path, number, PORT_RANGE_ERROR))
        return number

    def labels(self, value: Any, path: str) -> dict[str, str]:
        labels = self.mapping(value, path)
        for key, text in labels.items():
            if not isinstance(key, str):
                self.add(invalid(path, key, "must be a string"))
                continue
            self.messages(path, key, qualified_name(key))
            if isinstance(text, str):
                self.messages(path, text, label_value(text))
            else:
                self.add(invalid(f"{path}.{key}", text, "must be a string"))
        return labels  # type: ignore[return-value]

    def name(self, value: Any, path: str, check: Callable[[str], tuple[str, ...]]) -> str:
        text = self.string(value, path)
        if text:
            self.messages(path, text, check(text))
        return text

    def ip(self, value: Any, path: str) -> tuple[str, str | None]:
        text = self.string(value, path)
        family = ip_family(text) if text else None
        if text and family is None:
            self.add(invalid(path, text, IP_ERROR))
        return text, family

    def done(self, kind: str, name: str) -> None:
        if self.causes:
            raise Invalid(kind, name, self.causes)


# --- Documents to objects ----------------------------------------------------------------


def from_manifest(doc: Mapping[str, Any]) -> KubeObject:
    """The registry object for one defaulted Kubernetes document (Invalid if a value is
    bad, ManifestError if the document is no object kdns serves). The object keeps the
    document packed as its `manifest`; unknown fields stay there, unread. The copy makes
    any mapping a plain dict, which packing needs."""
    return parse(copy_tree(doc))


def parse(doc: dict[str, Any], kind: str | None = None, fields: dict[str, Any] | None = None) -> KubeObject:
    """from_manifest without the copy, for a document of plain dicts and lists: the
    object keeps it packed (objects.pack), so what the caller changes in `doc` afterwards
    does not reach the object. `kind` is kind_of(doc), if the caller has it already.

    `fields` are the kind's typed fields (all but `meta` and `manifest`) when the caller
    made `doc` from them and so has them already: the EndpointSlice controller, whose
    slices hold most of a cluster's objects. The metadata is read all the same.
    """
    kind = kind or kind_of(doc)
    meta, fields = checked(doc, kind, fields)
    return objects.KIND_CLASSES[kind](meta=meta, document=objects.pack(doc), **fields)


def checked(doc: Mapping[str, Any], kind: str, fields: dict[str, Any] | None = None) -> tuple[ObjectMeta, dict[str, Any]]:
    """What `parse` reads of `doc` (of `kind`): its metadata and typed fields (Invalid if a
    value is bad), without packing it: for admission, which validates a Service before
    it allocates, and then stores what allocation wrote."""
    check = _Checker()
    meta = _meta(doc, kind, check)
    if fields is None:
        fields = _PARSERS[kind](doc, meta, check)
    check.done(kind, meta.name)
    return meta, fields


_NAME_CHECKS: Mapping[str, Callable[[str], tuple[str, ...]]] = {
    objects.NAMESPACE: dns1123_label,
    objects.SERVICE: dns1035_label,
    objects.POD: dns1123_subdomain,
    objects.NODE: dns1123_subdomain,
    objects.ENDPOINT_SLICE: dns1123_subdomain,
}


def _valid_subdomain(name: str) -> bool:
    """not dns1123_subdomain(name), without the messages: pod names are all different,
    so the check is not worth remembering, and a load reads 100,000 of them."""
    return len(name) <= 253 and _DNS1123_SUBDOMAIN_RE.fullmatch(name) is not None


# Whether a name passes _NAME_CHECKS (the label checks remember their results).
_NAME_VALID: Mapping[str, Callable[[str], bool]] = {
    objects.NAMESPACE: lambda name: not dns1123_label(name),
    objects.SERVICE: lambda name: not dns1035_label(name),
    objects.POD: _valid_subdomain,
    objects.NODE: _valid_subdomain,
    objects.ENDPOINT_SLICE: _valid_subdomain,
}


def _meta(doc: Mapping[str, Any], kind: str, check: _Checker) -> ObjectMeta:
    """The metadata, every problem with it added to `check`. A value of the expected type
    is taken as it is; the checker reads any other, saying what is wrong with it: a bulk
    load is 100,000 objects, nearly always without a problem."""
    metadata = doc.get("metadata")
    if type(metadata) is not dict:
        if metadata is None:
            check.add(required("metadata.name", "name or generateName is required"))
            return ObjectMeta(name="")
        if not isinstance(metadata, Mapping):
            check.add(invalid("metadata", metadata, "must be an object"))
            return ObjectMeta(name="")
    name = metadata.get("name")
    if type(name) is not str:
        name = check.string(name, "metadata.name")
    if not name:
        check.add(required("metadata.name", "name or generateName is required"))
    elif not _NAME_VALID[kind](name):
        check.messages("metadata.name", name, _NAME_CHECKS[kind](name))
    namespace = ""
    if kind in objects.NAMESPACED_KINDS:
        given = metadata.get("namespace")
        namespace = (given if type(given) is str else check.string(given, "metadata.namespace")) or "default"
        problems = dns1123_label(namespace)
        if problems:
            check.messages("metadata.namespace", namespace, problems)
    labels = metadata.get("labels")
    if labels is None:
        labels = objects.shared_labels({})
    elif type(labels) is not dict:
        labels = check.labels(labels, "metadata.labels")
    else:
        valid = _valid_labels(labels)
        labels = valid if valid is not None else check.labels(labels, "metadata.labels")
    annotations = metadata.get("annotations")
    if annotations is not None and (type(annotations) is not dict or not _plain_annotations(annotations)):
        for key, value in check.mapping(annotations, "metadata.annotations").items():
            if not isinstance(key, str):
                check.add(invalid("metadata.annotations", key, "must be a string"))
                continue
            check.messages("metadata.annotations", key, qualified_name(key.lower()))
            if not isinstance(value, str):
                check.add(invalid(f"metadata.annotations.{key}", value, "must be a string"))
    version = metadata.get("resourceVersion")
    resource_version = 0
    if version is not None and version != "":
        if isinstance(version, str) and version.isascii() and version.isdigit():  # (`²` is a digit to isdigit)
            resource_version = int(version)
        elif isinstance(version, int) and not isinstance(version, bool) and version >= 0:
            resource_version = version
        else:
            check.add(invalid("metadata.resourceVersion", version, "must be a decimal integer"))
    uid, created, deleted = metadata.get("uid"), metadata.get("creationTimestamp"), metadata.get("deletionTimestamp")
    if type(uid) is not str:
        uid = check.string(uid, "metadata.uid")
    if type(created) is not str:
        created = check.string(created, "metadata.creationTimestamp")
    if type(deleted) is not str:
        deleted = check.string(deleted, "metadata.deletionTimestamp")
    return ObjectMeta(name, namespace, labels, uid, resource_version, created, deleted or None)


def _valid_labels(labels: dict[Any, Any]) -> Mapping[str, str] | None:
    """objects.shared_labels(labels) when every label is a valid key and value (as
    _Checker.labels would find), else None (the checker then says what is wrong). A set
    found valid once is remembered, by its items: a workload's pods share theirs, and a
    big load is 100,000 pods of 10,000 sets."""
    try:
        items = tuple(labels.items())
        found = _VALID_LABEL_SETS.get(items)
    except TypeError:  # a value that is no string, and cannot be hashed (a list)
        return None
    if found is not None:
        return found
    for key, value in items:
        if type(key) is not str or type(value) is not str or qualified_name(key) or label_value(value):
            return None
    if len(_VALID_LABEL_SETS) >= _MAX_LABEL_SETS:
        _VALID_LABEL_SETS.clear()
    found = _VALID_LABEL_SETS[items] = objects.shared_labels(labels)
    return found


# The label sets _valid_labels found valid (only strings in them: no other value equals
# one), by their items; and the annotation keys _plain_annotations found valid.
_VALID_LABEL_SETS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
_MAX_LABEL_SETS = 16384
_VALID_ANNOTATION_KEYS: set[str] = set()
_MAX_ANNOTATION_KEYS = 4096


def _plain_annotations(annotations: dict[Any, Any]) -> bool:
    """Whether every annotation is a valid key with a string value."""
    valid = _VALID_ANNOTATION_KEYS
    for key, value in annotations.items():
        if type(value) is not str or type(key) is not str:
            return False
        if key not in valid:
            if qualified_name(key.lower()):
                return False
            if len(valid) >= _MAX_ANNOTATION_KEYS:
                valid.clear()
            valid.add(key)
    return True


def _namespace(doc: Mapping[str, Any], meta: ObjectMeta, check: _Checker) -> dict[str, Any]:
    status = check.mapping(doc.get("status"), "status")
    check.enum(status.get("phase"), "status.phase", ("Active", "Terminating"))
    return {}


def _service(doc: Mapping[str, Any], meta: ObjectMeta, check: _Checker) -> dict[str, Any]:
    """pkg/apis/core/validation ValidateService, for the fields DNS and the controllers read."""
    # A value of the expected type (and one of the choices) is taken as is; the checker
    # reads any other, saying what is wrong with it.
    spec = doc.get("spec")
    if type(spec) is not dict:
        spec = check.mapping(spec, "spec")
    kind = spec.get("type")
    if type(kind) is not str or kind not in objects.SERVICE_TYPES:
        kind = check.enum(kind, "spec.type", objects.SERVICE_TYPES) or "ClusterIP"
    external = kind == "ExternalName"

    # Cluster IPs: spec.clusterIP is spec.clusterIPs[0]; "None" means headless; "" means
    # not yet allocated (admission allocates before the object is stored).
    cluster_ip = spec.get("clusterIP")
    if type(cluster_ip) is not str:
        cluster_ip = check.string(cluster_ip, "spec.clusterIP")
    cluster_ips = spec.get("clusterIPs")
    cluster_ips = list(cluster_ips if type(cluster_ips) is list else check.sequence(cluster_ips, "spec.clusterIPs"))
    for ip in cluster_ips:
        if type(ip) is not str:  # (the paths are written only for a problem)
            cluster_ips = [check.string(ip, f"spec.clusterIPs[{i}]") for i, ip in enumerate(cluster_ips)]
            break
    if not cluster_ips and cluster_ip:
        cluster_ips = [cluster_ip]
    elif cluster_ips and cluster_ip and cluster_ips[0] != cluster_ip:
        check.add(invalid("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`"))
    headless = cluster_ips[:1] == [CLUSTER_IP_NONE]
    ip_families = spec.get("ipFamilies")
    ip_families = list(ip_families if type(ip_families) is list else check.sequence(ip_families, "spec.ipFamilies"))
    for family in ip_families:
        if type(family) is not str or (family and family not in IP_FAMILIES):
            ip_families = [check.enum(f, f"spec.ipFamilies[{i}]", IP_FAMILIES) for i, f in enumerate(ip_families)]
            break
    policy = spec.get("ipFamilyPolicy")
    if type(policy) is not str or policy not in IP_FAMILY_POLICIES:
        policy = check.enum(policy, "spec.ipFamilyPolicy", IP_FAMILY_POLICIES)
    if external:
        if cluster_ips:
            check.add(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    else:
        families_seen = []
        for i, ip in enumerate(cluster_ips):
            if ip == CLUSTER_IP_NONE:
                if i > 0:
                    check.add(invalid("spec.clusterIPs", cluster_ips, "'None' must be the first and only value"))
                continue
            if not ip:
                continue
            family = ip_family(ip)
            if family is None:
                check.add(invalid(f"spec.clusterIPs[{i}]", ip, IP_ERROR))
                continue
            families_seen.append(family)
            if i < len(ip_families) and ip_families[i] and ip_families[i] != family:
                check.add(invalid(f"spec.clusterIPs[{i}]", cluster_ips,
                                  f"expected an {ip_families[i]} value as indicated by `ipFamilies[{i}]`"))
        if len(cluster_ips) > 2:
            check.add(invalid("spec.clusterIPs", cluster_ips, "may only hold up to 2 values"))
        elif len(families_seen) == 2 and families_seen[0] == families_seen[1]:
            check.add(invalid("spec.clusterIPs", cluster_ips, "may specify no more than one IP for each IP family"))
        if len(ip_families) > 2:
            check.add(invalid("spec.ipFamilies", ip_families, "may only hold up to 2 values"))
        for i in range(1, len(ip_families)):
            if ip_families[i] in ip_families[:i]:
                check.add(duplicate(f"spec.ipFamilies[{i}]", ip_families[i]))
        if policy == "SingleStack" and (len(ip_families) > 1 or len(families_seen) > 1):
            check.add(invalid("spec.ipFamilyPolicy", policy,
                              "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))

    # Ports.
    raw_ports = spec.get("ports")
    if type(raw_ports) is not list:
        raw_ports = check.sequence(raw_ports, "spec.ports")
    if not raw_ports and not headless and not external:
        check.add(required("spec.ports"))
    ports: list[ServicePort] = []
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    # The paths of the messages are written only for a problem: most ports have none.
    # Each value of the expected type and range is taken as is; any other goes through
    # the checker, which says what is wrong with it (in the same order as ever).
    for i, raw in enumerate(raw_ports):
        item = raw if type(raw) is dict else check.mapping(raw, f"spec.ports[{i}]")
        name = item.get("name")
        if type(name) is not str:
            name = check.string(name, f"spec.ports[{i}].name")
        if not name:
            if len(raw_ports) > 1:
                check.add(required(f"spec.ports[{i}].name"))
        else:
            problems = dns1123_label(name)
            if problems:
                check.messages(f"spec.ports[{i}].name", name, problems)
            if name in names:
                check.add(duplicate(f"spec.ports[{i}].name", name))
            names.add(name)
        port = item.get("port", 0)  # absent is Go's 0
        if type(port) is not int or not 1 <= port <= 65535:
            port = check.port(port, f"spec.ports[{i}].port")
        protocol = item.get("protocol")
        if type(protocol) is not str:
            protocol = check.string(protocol, f"spec.ports[{i}].protocol")
        if not protocol:
            check.add(required(f"spec.ports[{i}].protocol"))
        elif protocol not in objects.PROTOCOLS:
            check.add(unsupported(f"spec.ports[{i}].protocol", protocol, objects.PROTOCOLS))
        target = item.get("targetPort")
        if target is not None and not (
            (type(target) is int and 1 <= target <= 65535) or (type(target) is str and not port_name(target))
        ):
            target = _target_port(target, f"spec.ports[{i}].targetPort", check)
        node_port = item.get("nodePort")
        if node_port is not None:
            node_port = (node_port if type(node_port) is int else check.integer(node_port, f"spec.ports[{i}].nodePort")) or None
        if node_port is not None:
            if kind in ("ClusterIP", "ExternalName"):
                check.add(forbidden(f"spec.ports[{i}].nodePort", f"may not be used when `type` is '{kind}'"))
            elif not 1 <= node_port <= 65535:
                check.add(invalid(f"spec.ports[{i}].nodePort", node_port, PORT_RANGE_ERROR))
            elif (node_port, protocol) in node_ports:
                check.add(duplicate(f"spec.ports[{i}].nodePort", node_port))
            node_ports.add((node_port, protocol))
        if port is not None and protocol:
            if (port, protocol) in seen:
                check.add(duplicate(f"spec.ports[{i}]", {"port": port, "protocol": protocol}))
            seen.add((port, protocol))
        ports.append(service_port(name, protocol or "TCP", port or 0,
                                  target if target is not None else (port or 0), node_port))

    selector = spec.get("selector")
    if type(selector) is dict:
        for key, text in selector.items():  # as check.labels reads them, until a problem
            if type(key) is not str or type(text) is not str or qualified_name(key) or label_value(text):
                selector = check.labels(selector, "spec.selector")
                break
        else:
            selector = objects.shared_labels(selector)
    else:
        selector = check.labels(selector, "spec.selector")
    value = spec.get("sessionAffinity")
    if value is not None and (type(value) is not str or value not in SESSION_AFFINITIES):
        check.enum(value, "spec.sessionAffinity", SESSION_AFFINITIES)
    value = spec.get("internalTrafficPolicy")
    if value is not None and (type(value) is not str or value not in TRAFFIC_POLICIES):
        check.enum(value, "spec.internalTrafficPolicy", TRAFFIC_POLICIES)
    value = spec.get("externalTrafficPolicy")
    if value is not None and check.enum(value, "spec.externalTrafficPolicy", TRAFFIC_POLICIES) and kind not in (
        "NodePort", "LoadBalancer"
    ):
        check.add(invalid("spec.externalTrafficPolicy", value,
                          "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    publish = spec.get("publishNotReadyAddresses")
    if publish is not None and type(publish) is not bool:
        publish = check.boolean(publish, "spec.publishNotReadyAddresses")

    external_name: str | None = None
    if external:
        # The value may end with a dot to mark it fully qualified (validation trims it).
        text = check.string(spec.get("externalName"), "spec.externalName").rstrip(".").lower()
        if not text:
            check.add(required("spec.externalName"))
        else:
            check.messages("spec.externalName", spec.get("externalName"), dns1123_subdomain(text))
        external_name = text or None

    return {
        "type": kind,
        "cluster_ips": () if headless or external else tuple([ip for ip in cluster_ips if ip]),
        "headless": headless and not external,
        "ports": tuple(ports),
        "selector": selector,
        "external_name": external_name,
        "publish_not_ready_addresses": bool(publish),
        "ip_families": () if external else tuple([f for f in ip_families if f]),
    }


def service_port(name: str, protocol: str, port: int, target_port: int | str, node_port: int | None) -> ServicePort:
    """ServicePort(name, protocol, port, target_port, node_port), or an equal one made
    before: a frozen dataclass takes a microsecond to build (object.__setattr__ for each
    field), five times a look-up, and most Services of a cluster have one of a few port
    lists (a big load reads 30,000 ports). Bounded: emptied when full."""
    key = (name, protocol, port, target_port, node_port)
    found = _SERVICE_PORTS.get(key)
    if found is None:
        if len(_SERVICE_PORTS) >= _MAX_SERVICE_PORTS:
            _SERVICE_PORTS.clear()
        found = _SERVICE_PORTS[key] = ServicePort(name, protocol, port, target_port, node_port)
    return found


# The ports service_port made, by their fields (each a str, int or None as _service
# reads them: equal keys make equal ports).
_SERVICE_PORTS: dict[tuple[str, str, int, int | str, int | None], ServicePort] = {}
_MAX_SERVICE_PORTS = 4096


def _target_port(value: Any, path: str, check: _Checker) -> int | str | None:
    """An IntOrString: a port number, or the name of a container port."""
    if value is None:
        return None
    if isinstance(value, str):
        check.messages(path, value, port_name(value))
        return value
    return check.port(value, path)


def _pod(doc: Mapping[str, Any], meta: ObjectMeta, check: _Checker) -> dict[str, Any]:
    """A Pod's typed fields, every problem with them added to `check`. As in _service, a
    value of the expected type is taken as it is and the checker reads any other (paths
    are spelled out only then): a bulk load is 100,000 pods without a problem."""
    spec = doc.get("spec")
    if type(spec) is not dict:
        spec = check.mapping(spec, "spec")
    # (Most pods of a big load have none of the three: no call for them.)
    hostname, subdomain, node_name = spec.get("hostname"), spec.get("subdomain"), spec.get("nodeName")
    hostname = "" if hostname is None else _label_field(hostname, "spec.hostname", dns1123_label, check)
    subdomain = "" if subdomain is None else _label_field(subdomain, "spec.subdomain", dns1123_label, check)
    node_name = "" if node_name is None else _label_field(node_name, "spec.nodeName", dns1123_subdomain, check)
    container_ports: list[ContainerPort] = []
    containers = spec.get("containers")
    if type(containers) is not list:
        containers = check.sequence(containers, "spec.containers")
    for c, raw in enumerate(containers):
        container = raw if type(raw) is dict else check.mapping(raw, f"spec.containers[{c}]")
        raw_ports = container.get("ports")
        if raw_ports is None:
            continue
        if type(raw_ports) is not list:
            raw_ports = check.sequence(raw_ports, f"spec.containers[{c}].ports")
        names: set[str] = set()
        for p, raw_port in enumerate(raw_ports):
            item = raw_port if type(raw_port) is dict else check.mapping(raw_port, f"spec.containers[{c}].ports[{p}]")
            name = item.get("name")
            if type(name) is not str:
                name = check.string(name, f"spec.containers[{c}].ports[{p}].name")
            if name:
                problems = port_name(name)
                if problems:
                    check.messages(f"spec.containers[{c}].ports[{p}].name", name, problems)
                if name in names:
                    check.add(duplicate(f"spec.containers[{c}].ports[{p}].name", name))
                names.add(name)
            number = item.get("containerPort")
            if type(number) is not int or not 1 <= number <= 65535:
                path = f"spec.containers[{c}].ports[{p}].containerPort"
                if number is None or number == 0:
                    check.add(required(path))
                number = check.port(number, path) if number else None
            protocol = item.get("protocol")
            if protocol is None:
                protocol = "TCP"
            elif type(protocol) is not str or protocol not in objects.PROTOCOLS:
                protocol = check.enum(protocol, f"spec.containers[{c}].ports[{p}].protocol", objects.PROTOCOLS) or "TCP"
            if number is not None:
                container_ports.append(ContainerPort(name, number, protocol))

    status = doc.get("status")
    if type(status) is not dict:
        status = check.mapping(status, "status")
    phase = status.get("phase")
    if phase is None:
        phase = "Pending"
    elif type(phase) is not str or phase not in POD_PHASES:
        phase = check.enum(phase, "status.phase", POD_PHASES) or "Pending"
    given_ip = status.get("podIP")
    pod_ip: str
    pod_ip_family: str | None
    if type(given_ip) is str and ":" not in given_ip and _IPV4_RE.fullmatch(given_ip) is not None:
        pod_ip, pod_ip_family = given_ip, "IPv4"  # (ip_family's common case, inline)
    else:
        pod_ip, pod_ip_family = check.ip(given_ip, "status.podIP")
    pod_ips: list[str] = []
    families: list[str] = []
    raw_ips = status.get("podIPs")
    if type(raw_ips) is not list:
        raw_ips = check.sequence(raw_ips, "status.podIPs")
    if len(raw_ips) > 2:
        check.add(too_many("status.podIPs", len(raw_ips), 2))
    for i, raw in enumerate(raw_ips):
        entry = raw if type(raw) is dict else check.mapping(raw, f"status.podIPs[{i}]")
        family: str | None
        if pod_ip_family and entry.get("ip") == pod_ip:
            ip, family = pod_ip, pod_ip_family  # already checked
        else:
            ip, family = check.ip(entry.get("ip"), f"status.podIPs[{i}].ip")
        if not ip:
            check.add(required(f"status.podIPs[{i}].ip"))
        elif family:
            if family in families:
                check.add(invalid("status.podIPs", [ip], "may specify no more than one IP for each IP family"))
            families.append(family)
            pod_ips.append(ip)
    if pod_ip and pod_ips and pod_ips[0] != pod_ip:
        check.add(invalid("status.podIPs[0].ip", pod_ips[0], "must match status.podIP"))
    if not raw_ips and pod_ip_family:
        pod_ips = [pod_ip]
    ready = False
    conditions = status.get("conditions")
    if type(conditions) is not list:
        conditions = check.sequence(conditions, "status.conditions")
    for i, raw in enumerate(conditions):
        condition = raw if type(raw) is dict else check.mapping(raw, f"status.conditions[{i}]")
        kind, state = condition.get("type"), condition.get("status")
        if type(kind) is not str:
            kind = check.string(kind, f"status.conditions[{i}].type")
        if state not in CONDITION_STATUSES:
            state = check.enum(state, f"status.conditions[{i}].status", CONDITION_STATUSES)
        if kind == "Ready":
            ready = state == "True"
    return {
        "pod_ips": tuple(pod_ips),
        "phase": phase,
        "ready": ready,
        "hostname": hostname,
        "subdomain": subdomain,
        "node_name": node_name,
        "container_ports": tuple(container_ports),
    }


# A Pod's typed fields after its metadata, in the order of the class's (objects.Pod):
# pod_ips, phase, ready, hostname, subdomain, node_name, container_ports.
PodFields = tuple[tuple[str, ...], str, bool, str, str, str, tuple[ContainerPort, ...]]
NewPod = tuple[str, str, Mapping[str, str], str | None, PodFields]  # see new_pod


def new_pod(doc: Mapping[str, Any]) -> NewPod | None:
    """What `checked` reads of a new Pod's document once admission has set its metadata
    and defaults (kdns/registry/admission.py `admit`), read from the document as given,
    which is left as it is: its name, namespace, labels, deletionTimestamp (None: none)
    and typed fields (PodFields: passed to objects.Pod in order, a third of the cost of
    passing them by name). Only for a plain document: every value read of the expected type
    and valid, no managedFields, podIP and podIPs agreeing (or both absent); None for any
    other, which admission then admits step by step, and refuses saying why.

    A bulk load is 100,000 such pods: setting metadata and defaults in each tree that is
    thrown away (the Pod's document is Deferred), and reading them back, was half of
    their admission. tests/registry/test_fast_paths.py checks this against those steps."""
    metadata = doc.get("metadata")
    if type(metadata) is not dict or "managedFields" in metadata:
        return None
    name = metadata.get("name")
    # (_valid_subdomain, without its call.)
    if type(name) is not str or not name or len(name) > 253 or _DNS1123_SUBDOMAIN_RE.fullmatch(name) is None:
        return None
    namespace = metadata.get("namespace") or "default"  # (admission's default for any falsy value)
    if type(namespace) is not str or dns1123_label(namespace):
        return None
    labels = metadata.get("labels")
    if labels is None:
        labels = objects.shared_labels({})
    elif type(labels) is not dict:
        return None
    else:
        labels = _valid_labels(labels)
        if labels is None:
            return None
    annotations = metadata.get("annotations")
    if annotations is not None and (type(annotations) is not dict or not _plain_annotations(annotations)):
        return None
    deleted = metadata.get("deletionTimestamp")
    if deleted is not None and type(deleted) is not str:
        return None
    # (resourceVersion, generation, uid and creationTimestamp are admission's to set.)

    spec = doc.get("spec")
    if spec is None:
        spec = {}
    elif type(spec) is not dict:
        return None
    hostname, subdomain, node_name = spec.get("hostname"), spec.get("subdomain"), spec.get("nodeName")
    if hostname is None:
        hostname = ""
    elif type(hostname) is not str or (hostname and dns1123_label(hostname)):
        return None
    if subdomain is None:
        subdomain = ""
    elif type(subdomain) is not str or (subdomain and dns1123_label(subdomain)):
        return None
    if node_name is None:
        node_name = ""
    elif type(node_name) is not str or (node_name and not _valid_subdomain(node_name)):
        return None
    container_ports: list[ContainerPort] = []
    containers = spec.get("containers")
    if containers is not None:
        if type(containers) is not list:
            return None
        for container in containers:
            if type(container) is not dict:
                return None
            ports = container.get("ports")
            if ports is None:
                continue
            if type(ports) is not list:
                return None
            names: set[str] = set()
            for port in ports:
                if type(port) is not dict:
                    return None
                named = port.get("name")
                if named is None:
                    named = ""
                elif type(named) is not str:
                    return None
                elif named:
                    if port_name(named) or named in names:
                        return None
                    names.add(named)
                number = port.get("containerPort")
                if type(number) is not int or not 1 <= number <= 65535:
                    return None
                protocol = port.get("protocol") or "TCP"  # (admission's default for any falsy value)
                if type(protocol) is not str or protocol not in objects.PROTOCOLS:
                    return None
                container_ports.append(ContainerPort(named, number, protocol))

    status = doc.get("status")
    if status is None:
        status = {}
    elif type(status) is not dict:
        return None
    phase = status.get("phase") or "Pending"  # (admission's default for any falsy value)
    if type(phase) is not str or phase not in POD_PHASES:
        return None
    pod_ip, pod_ips = status.get("podIP"), status.get("podIPs")
    if type(pod_ip) is str and pod_ip:
        # An IPv4 podIP, and podIPs either absent (admission writes it from podIP) or that one.
        if ":" in pod_ip or _IPV4_RE.fullmatch(pod_ip) is None:
            return None
        if pod_ips and (type(pod_ips) is not list or len(pod_ips) != 1 or type(pod_ips[0]) is not dict
                        or pod_ips[0].get("ip") != pod_ip):
            return None
        addresses: tuple[str, ...] = (pod_ip,)
    elif pod_ip in (None, "") and pod_ips is None:
        addresses = ()
    else:
        return None
    ready = False
    conditions = status.get("conditions")
    if conditions is not None:
        if type(conditions) is not list:
            return None
        for condition in conditions:
            if type(condition) is not dict:
                return None
            kind, state = condition.get("type"), condition.get("status")
            if (kind is not None and type(kind) is not str) or state not in CONDITION_STATUSES:
                return None
            if kind == "Ready":
                ready = state == "True"
    return name, namespace, labels, deleted or None, (
        addresses, phase, ready, hostname, subdomain, node_name, tuple(container_ports))


def _label_field(value: Any, path: str, rule: Callable[[str], tuple[str, ...]], check: _Checker) -> str:
    """An optional name (`spec.hostname`): the value when it is a string that `rule` finds
    no problem with, else what the checker makes of it."""
    if value is None:
        return ""
    if type(value) is str and (not value or not rule(value)):
        return value
    return check.name(value, path, rule)


def _node(doc: Mapping[str, Any], meta: ObjectMeta, check: _Checker) -> dict[str, Any]:
    status = check.mapping(doc.get("status"), "status")
    addresses = []
    for i, raw in enumerate(check.sequence(status.get("addresses"), "status.addresses")):
        path = f"status.addresses[{i}]"
        item = check.mapping(raw, path)
        kind = check.string(item.get("type"), f"{path}.type")
        if not kind:
            check.add(required(f"{path}.type"))
        if kind in ("InternalIP", "ExternalIP"):
            address, _ = check.ip(item.get("address"), f"{path}.address")
        else:
            address = check.string(item.get("address"), f"{path}.address")
        if not address:
            check.add(required(f"{path}.address"))
        addresses.append(NodeAddress(kind, address))
    return {"addresses": tuple(addresses)}


_ADDRESS_FAMILY_ERRORS = {"IPv4": "must be a valid IPv4 address", "IPv6": "must be a valid IPv6 address"}


def _endpoint_slice(doc: Mapping[str, Any], meta: ObjectMeta, check: _Checker) -> dict[str, Any]:
    """pkg/apis/discovery/validation ValidateEndpointSlice."""
    address_type = check.string(doc.get("addressType"), "addressType")
    if not address_type:
        check.add(required("addressType"))
    elif address_type not in objects.ADDRESS_TYPES:
        check.add(unsupported("addressType", address_type, objects.ADDRESS_TYPES))
    endpoints: list[Endpoint] = []
    raw_endpoints = check.sequence(doc.get("endpoints"), "endpoints")
    if len(raw_endpoints) > MAX_SLICE_ENDPOINTS:
        check.add(too_many("endpoints", len(raw_endpoints), MAX_SLICE_ENDPOINTS))
        raw_endpoints = []
    for i, raw in enumerate(raw_endpoints):
        endpoints.append(_endpoint(raw, i, address_type, check))
    ports: list[EndpointPort] = []
    raw_ports = check.sequence(doc.get("ports"), "ports")
    if len(raw_ports) > MAX_SLICE_PORTS:
        check.add(too_many("ports", len(raw_ports), MAX_SLICE_PORTS))
        raw_ports = []
    names: set[str] = set()
    for i, raw in enumerate(raw_ports):
        path = f"ports[{i}]"
        item = check.mapping(raw, path)
        name = check.string(item.get("name"), f"{path}.name")
        if name:
            check.messages(f"{path}.name", name, dns1123_label(name))
        if name in names:
            check.add(duplicate(f"{path}.name", name))
        names.add(name)
        protocol = check.string(item.get("protocol"), f"{path}.protocol")
        if not protocol:
            check.add(required(f"{path}.protocol"))
        elif protocol not in objects.PROTOCOLS:
            check.add(unsupported(f"{path}.protocol", protocol, objects.PROTOCOLS))
        port = check.port(item.get("port"), f"{path}.port")
        ports.append(EndpointPort(name, port, protocol or "TCP"))
    return {"address_type": address_type or "IPv4", "endpoints": tuple(endpoints), "ports": tuple(ports)}


def _endpoint(raw: Any, i: int, address_type: str, check: _Checker) -> Endpoint:
    """`endpoints[i]` of an EndpointSlice, its problems added to `check`. As in _pod, a
    value of the expected type is taken as it is and the checker reads any other (paths are
    spelled out only then): the controller writes thousands of endpoints at a time, all
    well formed. The problems come in the order of the fields below."""
    item = raw if type(raw) is dict else check.mapping(raw, f"endpoints[{i}]")
    addresses = item.get("addresses")
    if type(addresses) is not list:
        addresses = check.sequence(addresses, f"endpoints[{i}].addresses")
    for address in addresses:
        if type(address) is not str:
            addresses = [check.string(a, f"endpoints[{i}].addresses[{j}]") for j, a in enumerate(addresses)]
            break
    if not addresses:
        check.add(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
    elif len(addresses) > MAX_ENDPOINT_ADDRESSES:
        check.add(too_many(f"endpoints[{i}].addresses", len(addresses), MAX_ENDPOINT_ADDRESSES))
    family_error = _ADDRESS_FAMILY_ERRORS.get(address_type)
    for j, address in enumerate(addresses):
        if family_error is not None:
            if ip_family(address) != address_type:
                check.add(invalid(f"endpoints[{i}].addresses[{j}]", address, family_error))
        elif address_type == "FQDN":
            check.messages(f"endpoints[{i}].addresses[{j}]", address, dns1123_subdomain(address))
    conditions = item.get("conditions")
    if type(conditions) is not dict:
        conditions = check.mapping(conditions, f"endpoints[{i}].conditions")
    hostname = item.get("hostname")
    if hostname is None:
        hostname = ""
    elif type(hostname) is not str or (hostname and dns1123_label(hostname)):
        hostname = check.name(hostname, f"endpoints[{i}].hostname", dns1123_label)
    node_name = item.get("nodeName")
    if node_name is None:
        node_name = ""
    elif type(node_name) is not str or (node_name and not _valid_subdomain(node_name)):
        node_name = check.name(node_name, f"endpoints[{i}].nodeName", dns1123_subdomain)
    target_ref = None
    ref = item.get("targetRef")
    if ref is not None:
        fields = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid")) if type(ref) is dict else ()
        if fields and _TEXT_OR_NONE.issuperset(map(type, fields)):
            kind, namespace, name, uid = fields
            target_ref = ObjectReference(kind or "", namespace or "", name or "", uid or "")
        else:
            ref = check.mapping(ref, f"endpoints[{i}].targetRef")
            target_ref = ObjectReference(
                kind=check.string(ref.get("kind"), f"endpoints[{i}].targetRef.kind"),
                namespace=check.string(ref.get("namespace"), f"endpoints[{i}].targetRef.namespace"),
                name=check.string(ref.get("name"), f"endpoints[{i}].targetRef.name"),
                uid=check.string(ref.get("uid"), f"endpoints[{i}].targetRef.uid"),
            )
    state = (conditions.get("ready"), conditions.get("serving"), conditions.get("terminating"))
    known = objects.ENDPOINT_CONDITIONS.get(state) if _BOOLEAN_OR_NONE.issuperset(map(type, state)) else None
    if known is None:
        known = objects.ENDPOINT_CONDITIONS[(
            check.boolean(state[0], f"endpoints[{i}].conditions.ready"),
            check.boolean(state[1], f"endpoints[{i}].conditions.serving"),
            check.boolean(state[2], f"endpoints[{i}].conditions.terminating"),
        )]
    return Endpoint(tuple(addresses), known, hostname, node_name, target_ref)


_BOOLEAN_OR_NONE = frozenset({bool, type(None)})
_TEXT_OR_NONE = frozenset({str, type(None)})


_PARSERS: Mapping[str, Callable[[Mapping[str, Any], ObjectMeta, _Checker], dict[str, Any]]] = {
    objects.NAMESPACE: _namespace,
    objects.SERVICE: _service,
    objects.POD: _pod,
    objects.NODE: _node,
    objects.ENDPOINT_SLICE: _endpoint_slice,
}


# --- Objects to documents ----------------------------------------------------------------


def to_manifest(obj: KubeObject) -> dict[str, Any]:
    """The Kubernetes document for an object: its manifest (a fresh copy) with the
    metadata the registry assigned (resourceVersion, uid, creationTimestamp, namespace)."""
    doc = obj.manifest
    doc.setdefault("apiVersion", objects.API_VERSIONS[obj.kind])
    doc.setdefault("kind", obj.kind)
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        metadata = doc["metadata"] = {}
    meta = obj.meta
    metadata["name"] = meta.name
    if meta.namespace:
        metadata["namespace"] = meta.namespace
    if meta.uid:
        metadata["uid"] = meta.uid
    if meta.resource_version:
        metadata["resourceVersion"] = str(meta.resource_version)
    if meta.creation_timestamp:
        metadata["creationTimestamp"] = meta.creation_timestamp
    return doc


def with_resource_version(obj: KubeObject, resource_version: int) -> Any:
    """The same object at another resource version (as a DELETED event reports it): only
    `meta.resource_version` and the manifest's metadata.resourceVersion differ."""
    manifest = obj.manifest
    manifest["metadata"] = {**manifest.get("metadata", {}), "resourceVersion": str(resource_version)}
    return replace(obj, meta=replace(obj.meta, resource_version=resource_version),  # type: ignore[type-var]
                   document=objects.pack(manifest))
