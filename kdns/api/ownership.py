"""Field ownership: `metadata.managedFields`, for Apply and Update operations.

Each manager that applies a configuration owns the fields it set, recorded as
kube-apiserver records them: a `managedFields` entry `{manager, operation: Apply,
apiVersion, time, fieldsType: FieldsV1, fieldsV1}`, where fieldsV1 is the set of paths
in structured-merge-diff's notation (`f:<field>`, `k:<json key>` for an item of a list
merged by key, `v:<json value>` for an item of a set, `.` for the item itself). What it
gives:

* re-applying drops what the manager set before and leaves out now (a port whose number
  changed goes, instead of staying beside the new one);
* applying a value to a field another manager applied a different value to is a 409
  Conflict naming both, unless `force=true`, which takes the field over.

Every other write (POST, PUT, a PATCH that is not an apply) is an Update operation, recorded
as structured-merge-diff's Updater records it (`updated`): the writer's Update entry gains
the fields the write added or changed, every other manager loses them (an update always
forces), and a field the write removed is nobody's any more. The writer is `?fieldManager=`,
else its User-Agent up to the first `/` (kubectl's `kubectl-edit`, `kubectl-label`, ... name
themselves). Applying a different value to a field an Update owns is a conflict too, named
as the API server names it: `conflict with "kubectl-edit" using v1: .spec.type`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, TypeGuard

from kdns.registry.schema import Schema, child

__all__ = [
    "APPLY", "UPDATE", "Path", "conflicts", "fields_of", "manager_of", "path_text", "record", "release", "skeleton",
    "updated",
]

APPLY = "Apply"
UPDATE = "Update"
_MAX_MANAGER = 128  # kube-apiserver's limit on a manager's name
FieldSet = dict[str, Any]  # FieldsV1: {"f:spec": {"f:ports": {'k:{"port":80}': {".": {}, ...}}}}
Path = tuple[str, ...]
_IDENTITY = {"apiVersion", "kind"}
_IDENTITY_METADATA = {"name", "namespace", "resourceVersion", "managedFields", "uid", "creationTimestamp"}
_MISSING = object()


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(value, Mapping), answered at once for a dict and for the other types
    JSON and YAML give: the ABC's check is most of the bookkeeping of a small write,
    which makes dozens."""
    kind = type(value)
    return kind is dict or (kind not in _NOT_MAPPINGS and isinstance(value, Mapping))


_NOT_MAPPINGS = frozenset({str, int, float, bool, type(None), list})


# One encoder for every key a path holds: json.dumps with options makes a new encoder per
# call, which was a fifth of a small write's bookkeeping.
_KEY_TEXT = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _item_key(item: Mapping[str, Any], merge_key: str) -> str:
    value = item.get(merge_key)
    if type(value) is str:  # (most keys: a name, a type) what _KEY_TEXT writes, without its dict
        return f"k:{{{_JSON_STRING(merge_key)}:{_JSON_STRING(value)}}}"
    return "k:" + _KEY_TEXT({merge_key: value})


_JSON_STRING = json.encoder.encode_basestring_ascii  # a string as JSON writes it (ensure_ascii)


def fields_of(config: Mapping[str, Any], schema: Schema | None) -> FieldSet:
    """The paths an applied configuration sets (identity fields left out, as the API
    server leaves them out)."""
    fields = _fields(config, schema)
    for name in _IDENTITY:
        fields.pop(f"f:{name}", None)
    metadata = fields.get("f:metadata")
    if isinstance(metadata, dict):
        for name in _IDENTITY_METADATA:
            metadata.pop(f"f:{name}", None)
        if not metadata:
            del fields["f:metadata"]
    return fields


def _fields(value: Any, schema: Schema | None) -> FieldSet:
    if _is_mapping(value):
        return {f"f:{key}": _fields(item, child(schema, key)) for key, item in value.items() if item is not None}
    if isinstance(value, list) and schema is not None and schema.type == "array":
        strategy = (schema.strategy or "").split(",")
        if schema.merge_key and all(_is_mapping(item) for item in value):
            return {
                _item_key(item, schema.merge_key): {".": {}, **_fields(item, schema.items)} for item in value
            }
        if "merge" in strategy:
            return {"v:" + _KEY_TEXT(item): {} for item in value}
    return {}  # a leaf: a scalar, or a list replaced whole


def _owned(doc: Mapping[str, Any], schema: Schema | None) -> list[Path]:
    """`leaves(fields_of(doc, schema))`, walked straight from the document: an Update
    lists the leaves of what changed and of what went on every write, and building the
    FieldSet only to walk it again was most of that."""
    found: list[Path] = []
    for key, value in doc.items():
        if value is None or key in _IDENTITY:
            continue
        if key == "metadata":
            if _is_mapping(value):
                metadata = child(schema, key)
                for name, item in value.items():
                    if item is not None and name not in _IDENTITY_METADATA:
                        _walk(item, child(metadata, name), ("f:metadata", f"f:{name}"), found)
            continue  # (a metadata of identity fields alone sets nothing)
        _walk(value, child(schema, key), (f"f:{key}",), found)
    return found


def _by_merge_key(value: list[Any], merge_key: str) -> dict[str, Any]:
    """A merge-keyed list's items by their key; the last item of a key is the one its
    FieldSet holds, as in `_fields`."""
    items: dict[str, Any] = {}
    for item in value:
        items[_item_key(item, merge_key)] = item
    return items


def _walk(value: Any, schema: Schema | None, path: Path, found: list[Path]) -> None:
    """Append the leaves `_fields(value, schema)` has under `path` (`path` itself when
    that FieldSet is empty: a leaf)."""
    if _is_mapping(value):
        leaf = True
        for key, item in value.items():
            if item is not None:
                leaf = False
                _walk(item, child(schema, key), (*path, f"f:{key}"), found)
        if leaf:
            found.append(path)
        return
    if value and isinstance(value, list) and schema is not None and schema.type == "array":
        merge_key = schema.merge_key
        # (Loops: `all` of a generator and a comprehension are calls of their own.)
        if merge_key and _all_mappings(value):
            for key, item in _by_merge_key(value, merge_key).items():
                at = (*path, key)
                found.append(at)  # its "."
                for name, field in item.items():
                    if field is not None:
                        _walk(field, child(schema.items, name), (*at, f"f:{name}"), found)
            return
        if "merge" in (schema.strategy or "").split(","):
            found.extend((*path, key) for key in dict.fromkeys("v:" + _KEY_TEXT(item) for item in value))
            return
    found.append(path)  # a scalar, a list replaced whole, or an empty list


def skeleton(fields: FieldSet) -> Any:
    """A configuration with the shape of `fields` (placeholder values at the leaves): what
    `patch.apply_configuration` prunes by when it is the previous configuration."""
    doc: dict[str, Any] = {}
    items: list[Any] = []
    for key, sub in fields.items():
        if key.startswith("f:"):
            doc[key[2:]] = skeleton(sub) if sub else True
        elif key.startswith("k:"):
            item = json.loads(key[2:])
            rest = skeleton({k: v for k, v in sub.items() if k != "."})
            items.append({**rest, **item} if isinstance(rest, dict) else item)  # the key wins
        elif key.startswith("v:"):
            items.append(json.loads(key[2:]))
    if items:
        return items
    return doc


def leaves(fields: FieldSet, prefix: Path = ()) -> Iterator[Path]:
    """Every path that ends in an owned value (a leaf, or a list item's `.`)."""
    return iter(_leaves(fields, prefix))


def _leaves(fields: FieldSet, prefix: Path = ()) -> list[Path]:
    """`leaves` as a list, walked with a stack: nested generators cost a call per level
    per leaf, and every write lists the leaves of each managedFields entry."""
    found: list[Path] = []
    stack = [(prefix, fields)]
    while stack:
        at, node = stack.pop()
        for key, sub in node.items():
            if key == ".":
                found.append(at)
            elif sub:
                stack.append(((*at, key), sub))
            else:
                found.append((*at, key))
    return found


def value_at(doc: Any, path: Path) -> Any:
    """The value a path names in a document, or _MISSING."""
    for step in path:
        doc = _step(doc, step)
        if doc is _MISSING:
            break
    return doc


def _step(doc: Any, step: str) -> Any:
    """The value one step of a path names in `doc`, or _MISSING."""
    kind, _, text = step.partition(":")
    if kind == "f":
        return _field(doc, text)
    if kind in ("k", "v"):
        wanted = _key_value(text)
        if not isinstance(doc, list):
            return _MISSING
        # The first item that matches. (Loops, not generators: each is a call of its own,
        # and a status write takes a step like this four times.)
        if kind == "v":
            for item in doc:
                if item == wanted:
                    return item
            return _MISSING
        if _is_mapping(wanted) and len(wanted) == 1:  # (nearly every key: a name, a type, a port)
            [(key, value)] = wanted.items()
            for item in doc:
                if _is_mapping(item) and item.get(key) == value:
                    return item
            return _MISSING
        for item in doc:
            if _is_mapping(item) and all(item.get(k) == v for k, v in wanted.items()):
                return item
        return _MISSING
    return doc


def _field(doc: Any, name: str) -> Any:
    """`_step(doc, "f:" + name)`: a mapping's field, or _MISSING."""
    if doc is _MISSING or not _is_mapping(doc) or name not in doc:
        return _MISSING
    return doc[name]


@lru_cache(maxsize=4096)
def _key_value(text: str) -> Any:
    """The JSON value of a `k:`/`v:` step, parsed once: the same few keys (a Pod's Ready
    condition, a port) come back on every write. Callers only read it."""
    return json.loads(text)


def path_text(path: Path) -> str:
    """`.spec.ports[port=80].targetPort`, as the API server writes a conflicting field."""
    out = []
    for step in path:
        kind, _, text = step.partition(":")
        if kind == "f":
            out.append(f".{text}")
        elif kind == "k":
            keys = json.loads(text)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(keys.items())) + "]")
        elif kind == "v":
            out.append(f"[={text}]")
    return "".join(out)


def manager_of(field_manager: str | None, user_agent: str) -> str:
    """Who makes a write: `?fieldManager=`, else the User-Agent's product (`kubectl` of
    `kubectl/v1.32.4 (linux/amd64) ...`), as kube-apiserver's prefixFromUserAgent."""
    return field_manager or user_agent.split("/", 1)[0][:_MAX_MANAGER]


def _who(entry: Mapping[str, Any]) -> str:
    """A manager as a conflict names it: an Update's with the apiVersion it wrote."""
    who = json.dumps(str(entry.get("manager", "")))
    if entry.get("subresource"):
        who += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == UPDATE:
        who += f" using {entry.get('apiVersion', '')}"
    return who


def conflicts(
    fields: FieldSet, entries: list[Any], live: Mapping[str, Any], config: Mapping[str, Any]
) -> list[tuple[str, Path]]:
    """(manager as the message names it, path) for each field another manager owns that
    `config` sets to a value other than the live one."""
    mine = set(_leaves(fields))
    found: list[tuple[str, Path]] = []
    for entry in entries:
        if not _is_mapping(entry):
            continue
        theirs = entry.get("fieldsV1")
        if not _is_mapping(theirs):
            continue
        manager = _who(entry)
        # A list item's own path is its existence, which both want: only values conflict.
        found.extend(
            (manager, path) for path in sorted(mine & set(_leaves(dict(theirs))))
            if path and path[-1][:2] not in ("k:", "v:") and value_at(live, path) != value_at(config, path)
        )
    return found


def _tree(paths: Iterator[Path] | set[Path]) -> FieldSet:
    """The FieldSet of these leaf paths."""
    tree: FieldSet = {}
    for path in sorted(paths):
        node = tree
        for step in path:
            node = node.setdefault(step, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return tree


def release(fields: FieldSet, taken: set[Path]) -> FieldSet:
    """`fields` without the paths in `taken` (a forced apply takes them over)."""
    return _tree({path for path in _leaves(fields) if path not in taken})


def _differing(live: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(live, new) without the fields equal on both sides, at every level of mappings:
    their leaves are the only ones a write can have changed or removed. A mapping is cut
    down only where what is left of it still has fields (no None, no {}), so that cutting
    never turns it into a leaf of its own."""
    live_part: dict[str, Any] = {}
    new_part: dict[str, Any] = {}
    for key, value in new.items():
        if key not in live:
            new_part[key] = value
            continue
        before = live[key]
        if before == value:
            continue
        if _is_mapping(before) and _is_mapping(value):
            sub_live, sub_new = _differing(before, value)
            live_part[key] = sub_live if _has_fields(sub_live) else before
            new_part[key] = sub_new if _has_fields(sub_new) else value
        else:
            live_part[key], new_part[key] = before, value
    for key, before in live.items():  # (a loop: a comprehension is a call of its own)
        if key not in new:
            live_part[key] = before  # noqa: PERF403
    return live_part, new_part


def _diff(part: Mapping[str, Any], schema: Schema | None, here: Any, there: Any, found: set[Path],
          compare: bool) -> None:
    """Add to `found` the leaves `_owned(part, schema)` lists (`part`: one side of
    `_differing`, cut from the document `here`) whose value in the document `there` is
    not the one in `here` (`compare`), or is missing (not `compare`; a list item's, either
    way). Both documents are read along each path as `value_at` reads them, a step per
    level, as the part is walked: one walk, where listing the leaves and then looking each
    up from the root was most of a status write's bookkeeping."""
    for key, value in part.items():
        if value is None or key in _IDENTITY:
            continue
        if key == "metadata":
            if _is_mapping(value):
                metadata = child(schema, key)
                here_metadata, there_metadata = _field(here, key), _field(there, key)
                for name, item in value.items():
                    if item is not None and name not in _IDENTITY_METADATA:
                        _diff_walk(item, child(metadata, name), ("f:metadata", f"f:{name}"),
                                   _field(here_metadata, name), _field(there_metadata, name), found, compare)
            continue
        _diff_walk(value, child(schema, key), (f"f:{key}",), _field(here, key), _field(there, key), found, compare)


def _diff_walk(value: Any, schema: Schema | None, path: Path, here: Any, there: Any, found: set[Path],
               compare: bool) -> None:
    """`_walk`'s leaves of `value` under `path`, each added to `found` as `_diff` says;
    `here` and `there` are the two documents' values at `path` (or _MISSING). A field
    that is a scalar (most are) is a leaf looked at in place, without a call for it."""
    if _is_mapping(value):
        leaf = True
        for key, item in value.items():
            if item is not None:
                leaf = False
                at_here = here.get(key, _MISSING) if type(here) is dict else _field(here, key)
                at_there = there.get(key, _MISSING) if type(there) is dict else _field(there, key)
                if type(item) in _SCALAR_TYPES:
                    if (at_there != at_here) if compare else (at_there is _MISSING):
                        found.add((*path, f"f:{key}"))
                else:
                    _diff_walk(item, child(schema, key), (*path, f"f:{key}"), at_here, at_there, found, compare)
        if not leaf:
            return
    elif value and isinstance(value, list) and schema is not None and schema.type == "array":
        merge_key = schema.merge_key
        # (Loops: `all` of a generator and a comprehension are calls of their own.)
        if merge_key and _all_mappings(value):
            for key, item in _by_merge_key(value, merge_key).items():
                at = (*path, key)
                here_item, there_item = _step(here, key), _step(there, key)
                if there_item is _MISSING:  # its "."
                    found.add(at)
                for name, field in item.items():
                    if field is not None:
                        at_here = here_item.get(name, _MISSING) if type(here_item) is dict else _field(here_item, name)
                        at_there = (there_item.get(name, _MISSING) if type(there_item) is dict
                                    else _field(there_item, name))
                        if type(field) in _SCALAR_TYPES:
                            if (at_there != at_here) if compare else (at_there is _MISSING):
                                found.add((*at, f"f:{name}"))
                        else:
                            _diff_walk(field, child(schema.items, name), (*at, f"f:{name}"), at_here, at_there,
                                       found, compare)
            return
        if "merge" in (schema.strategy or "").split(","):
            found.update(
                (*path, key) for key in dict.fromkeys("v:" + _KEY_TEXT(item) for item in value)
                if _step(there, key) is _MISSING
            )
            return
    # A leaf: a scalar, a list replaced whole, an empty list, or a mapping of no fields.
    if (there != here) if compare else (there is _MISSING):
        found.add(path)


def _all_mappings(items: list[Any]) -> bool:
    """Whether every item is a mapping (a list merged by key is walked item by item)."""
    for item in items:  # noqa: SIM110  (a loop: all() of a generator is a call per item)
        if not _is_mapping(item):
            return False
    return True


# What `_diff_walk` takes as a leaf at once (None is no field).
_SCALAR_TYPES = frozenset({str, int, float, bool})


def _has_fields(part: Mapping[str, Any]) -> bool:
    """Whether every field of `part` names something (`_fields` skips None; {} is a leaf)."""
    if not part:
        return False
    for value in part.values():  # noqa: SIM110  (a loop: a generator is a call per value)
        if value is None or value == {}:
            return False
    return True


def updated(
    entries: list[Any], manager: str, live: Mapping[str, Any] | None, new: Mapping[str, Any],
    schema: Schema | None, api_version: str, now: str, subresource: str | None = None,
) -> list[Any]:
    """The managedFields after `manager` wrote `new` over `live` (None: created it) in an
    Update operation: its entry gains what changed, the others lose it and what went."""
    if live is None:
        changed, removed = set(_owned(new, schema)), set[Path]()
    else:
        # Only the parts that differ are walked: a field equal on both sides (a status
        # write's spec and metadata) neither changed nor lost anything.
        live_part, new_part = _differing(live, new)
        changed, removed = set[Path](), set[Path]()
        # What the write added or changed: the leaves of new_part whose value in `live`
        # is not the one in `new` (a list item's: not in `live`); what it removed: the
        # leaves of live_part that name nothing in `new`.
        _diff(new_part, schema, new, live, changed, True)
        _diff(live_part, schema, _MISSING, new, removed, False)
    result: list[Any] = []
    mine: set[Path] = set()
    for entry in entries:
        if not _is_mapping(entry):
            continue
        theirs = entry.get("fieldsV1")
        paths = set(_leaves(dict(theirs))) if _is_mapping(theirs) else set()
        if (entry.get("manager", ""), entry.get("operation"), entry.get("apiVersion"), entry.get("subresource")) == (
            manager, UPDATE, api_version, subresource
        ):
            mine = paths
            continue
        kept = paths - changed - removed
        if kept == paths:
            result.append(dict(entry))
        elif kept:
            result.append({**entry, "fieldsV1": _tree(kept)})
    own = (mine - removed) | changed
    if own:
        # A writer with neither fieldManager nor User-Agent has no name: `manager` is
        # omitempty in ManagedFieldsEntry, so the entry goes without one.
        entry = {
            **({"manager": manager} if manager else {}), "operation": UPDATE, "apiVersion": api_version,
            "time": now, "fieldsType": "FieldsV1", "fieldsV1": _tree(own),
        }
        if subresource:
            entry["subresource"] = subresource
        result.append(entry)
    return result


def record(
    entries: list[Any], manager: str, fields: FieldSet, api_version: str, now: str, released: set[Path] | None = None
) -> list[Any]:
    """The managedFields after `manager` applied `fields`: its Apply entry replaced, the
    paths it took by force released by the others, Updates' too (an entry left with none goes)."""
    result = []
    for entry in entries:
        if not _is_mapping(entry):
            continue
        if entry.get("manager") == manager and entry.get("operation") == APPLY:
            continue
        if released and isinstance(entry.get("fieldsV1"), Mapping):
            remaining = release(dict(entry["fieldsV1"]), released)
            if remaining:
                result.append({**entry, "fieldsV1": remaining})
            continue
        result.append(dict(entry))
    result.append({
        "manager": manager,
        "operation": APPLY,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    })
    return result
