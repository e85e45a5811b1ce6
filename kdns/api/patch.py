"""The PATCH dialects of the Kubernetes API, on plain JSON documents.

* JSON merge patch, RFC 7386 (`application/merge-patch+json`);
* JSON patch, RFC 6902 (`application/json-patch+json`), pointers per RFC 6901;
* strategic merge patch (`application/strategic-merge-patch+json`), as
  k8s.io/apimachinery/pkg/util/strategicpatch: lists with a patch merge key are merged by
  that key, `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<field>` and
  `$deleteFromPrimitiveList/<field>`; lists without one are replaced;
* server-side apply (`application/apply-patch+yaml`), approximated: the applied
  configuration is merged into the live object the strategic way (no field ownership).

Every function returns a new document and leaves its inputs alone.
"""

from __future__ import annotations

import copy
from typing import Any, overload

from kdns.errors import KdnsError
from kdns.registry.manifests import copy_tree
from kdns.registry.schema import Schema, child

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"


class PatchError(KdnsError):
    """The patch cannot be applied to the object."""


class BadPatch(KdnsError):
    """The patch is malformed."""


# --- RFC 7386 ----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2 MergePatch, verbatim."""
    if not isinstance(patch, dict):
        return copy_tree(patch)  # (JSON: copy_tree's copy is deepcopy's, several times sooner)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 ----------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise BadPatch(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    # RFC 6901 section 4: ~1 before ~0.
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, for_add: bool = False) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in {path}")
    index = int(token)
    if index > len(container) or (index == len(container) and not for_add):
        raise PatchError(f"array index {index} out of bounds in {path}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"doc is missing path: {path}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path)]
        else:
            raise PatchError(f"doc is missing path: {path}")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"doc is missing key: {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path)]
    raise PatchError(f"doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, for_add=True), value)
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing key: {path}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, path)]
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def json_patch(document: Any, operations: Any) -> Any:
    """Apply RFC 6902 operations in order; any failure fails the whole patch (section 5)."""
    if not isinstance(operations, list):
        raise BadPatch("a JSON patch must be an array of operations")
    doc = copy.deepcopy(document)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or "path" not in op:
            raise BadPatch(f"operation {number}: needs \"op\" and \"path\"")
        name, path = op["op"], op["path"]
        if name in ("add", "replace", "test") and "value" not in op:
            raise BadPatch(f"operation {number} ({name}): missing \"value\"")
        if name in ("move", "copy") and "from" not in op:
            raise BadPatch(f"operation {number} ({name}): missing \"from\"")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            doc = _remove(doc, path)
        elif name == "replace":
            _get(doc, path)  # must exist (RFC 6902 section 4.3)
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(op["value"])
            else:
                parent = _parent(doc, tokens, path)
                if isinstance(parent, list):
                    parent[_index(parent, tokens[-1], path)] = copy.deepcopy(op["value"])
                else:
                    parent[tokens[-1]] = copy.deepcopy(op["value"])
        elif name == "move":
            source = op["from"]
            if path != source and path.startswith(source + "/"):
                raise PatchError(f"cannot move {source} into its own child {path}")
            value = _get(doc, source)
            doc = _add(_remove(doc, source), path, value)
        elif name == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif name == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise BadPatch(f"operation {number}: unknown op {name!r}")
    return doc


# --- Strategic merge patch ---------------------------------------------------------------


@overload
def _strip(value: dict[str, Any]) -> dict[str, Any]: ...


@overload
def _strip(value: list[Any]) -> list[Any]: ...


def _strip(value: Any) -> Any:
    """A patch value placed where the original had nothing: directives removed."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in (DIRECTIVE, RETAIN_KEYS)
            and not k.startswith((SET_ORDER, DELETE_FROM_PRIMITIVE))
            and v is not None
        }
    if isinstance(value, list):
        return [
            _strip(v)
            for v in value
            if not (isinstance(v, dict) and v.get(DIRECTIVE) in ("delete", "replace"))
        ]
    return value


def strategic_merge_patch(original: Any, patch: Any, schema: Schema | None) -> Any:
    if not isinstance(patch, dict):
        raise BadPatch("a strategic merge patch must be a JSON object")
    if not isinstance(original, dict):
        return _strip(patch)
    return _merge_map(copy.deepcopy(original), patch, schema)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    directive = patch.get(DIRECTIVE)
    if directive is not None:
        if directive == "replace":
            return _strip({k: v for k, v in patch.items() if k != DIRECTIVE})
        if directive == "delete":
            return {}
        if directive != "merge":
            raise BadPatch(f"unknown patch type {directive!r} in map")

    if RETAIN_KEYS in patch:
        retain = patch[RETAIN_KEYS]
        if not isinstance(retain, list):
            raise BadPatch("$retainKeys must be a list")
        for key in patch:
            if key.startswith("$") or key in retain:
                continue
            if patch[key] is not None:
                raise PatchError(f"the patch has key {key!r} that $retainKeys does not list")
        original = {k: v for k, v in original.items() if k in retain}

    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE):
            field = key[len(DELETE_FROM_PRIMITIVE) :]
            if not isinstance(value, list):
                raise BadPatch(f"{key} must be a list")
            current = original.get(field)
            if isinstance(current, list):
                original[field] = [v for v in current if v not in value]
        elif key.startswith(SET_ORDER):
            if not isinstance(value, list):
                raise BadPatch(f"{key} must be a list")
            orders[key[len(SET_ORDER) :]] = value

    for key, value in patch.items():
        if key in (DIRECTIVE, RETAIN_KEYS) or key.startswith((SET_ORDER, DELETE_FROM_PRIMITIVE)):
            continue
        field_schema = child(schema, key)
        if value is None:
            original.pop(key, None)
        elif key not in original or original[key] is None:
            if isinstance(value, dict) and value.get(DIRECTIVE) == "delete":
                continue
            original[key] = _strip(value)
        elif isinstance(value, dict) and isinstance(original[key], dict):
            merged = _merge_map(original[key], value, field_schema)
            if value.get(DIRECTIVE) == "delete":
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list) and isinstance(original[key], list):
            original[key] = _merge_list(original[key], value, field_schema)
        else:
            original[key] = _strip(value)

    for field, order in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _reorder(original[field], order, child(schema, field))
    return original


def _merge_list(original: list[Any], patch: list[Any], schema: Schema | None) -> list[Any]:
    strategy = (schema.strategy or "") if schema is not None else ""
    if "merge" not in strategy.split(","):
        return _strip(patch)
    merge_key = schema.merge_key if schema is not None else None
    items_schema = schema.items if schema is not None else None

    for item in patch:
        if isinstance(item, dict) and item.get(DIRECTIVE) == "replace":
            return [_strip(i) for i in patch if i is not item]

    if merge_key is None:
        # A set of primitives (finalizers, podCIDRs): union, keeping the original order.
        merged = list(original)
        for item in patch:
            if item not in merged:
                merged.append(_strip(item))
        return merged

    merged = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise BadPatch(f"list items merged by {merge_key!r} must be objects")
        if merge_key not in item:
            raise BadPatch(f"map in list is missing the merge key {merge_key!r}")
        key_value = item[merge_key]
        if item.get(DIRECTIVE) == "delete":
            merged = [
                i for i in merged if not (isinstance(i, dict) and i.get(merge_key) == key_value)
            ]
            continue
        for index, existing in enumerate(merged):
            if isinstance(existing, dict) and existing.get(merge_key) == key_value:
                merged[index] = _merge_map(existing, item, items_schema)
                break
        else:
            merged.append(_strip(item))
    return merged


def _reorder(items: list[Any], order: list[Any], schema: Schema | None) -> list[Any]:
    """`$setElementOrder`: the listed items in that order, then the others as they were."""
    merge_key = schema.merge_key if schema is not None else None

    def key_of(value: Any) -> Any:
        if merge_key is not None and isinstance(value, dict):
            return value.get(merge_key)
        return value

    wanted = [key_of(o) for o in order]
    position = {repr(k): i for i, k in enumerate(wanted)}
    listed = sorted(
        (i for i in items if repr(key_of(i)) in position), key=lambda i: position[repr(key_of(i))]
    )
    rest = [i for i in items if repr(key_of(i)) not in position]
    return listed + rest


# --- Server-side apply (approximation) ---------------------------------------------------


def apply_configuration(
    live: Any, applied: dict[str, Any], schema: Schema | None, previous: dict[str, Any] | None = None
) -> Any:
    """Merge an applied configuration into the live object: fields it sets win, lists with
    merge keys are merged by key, other lists are replaced. Fields that the `previous`
    configuration of the same applier set and this one leaves out are removed (kubectl
    keeps that configuration in the last-applied annotation); all other fields stay.

    This stands in for field ownership (managedFields): what the applier set before is
    what it owns."""
    cleaned = {k: v for k, v in applied.items() if v is not None}
    base = copy.deepcopy(live) if isinstance(live, dict) else {}
    if isinstance(previous, dict):
        _prune(base, previous, cleaned, schema)
    return strategic_merge_patch(base, cleaned, schema)


def _prune(live: dict[str, Any], previous: dict[str, Any], applied: dict[str, Any], schema: Schema | None) -> None:
    """Remove from `live` what `previous` had and `applied` no longer has."""
    for key, before in previous.items():
        if key not in live:
            continue
        now = applied.get(key)
        if now is None and isinstance(before, dict) and isinstance(live[key], dict):
            # The applier owned the fields it set inside this map, not the map: others'
            # fields stay, and the map goes only when nothing is left in it.
            _prune(live[key], before, {}, child(schema, key))
            if not live[key] and before:
                del live[key]
            continue
        if now is None:
            del live[key]
            continue
        field_schema = child(schema, key)
        if isinstance(before, dict) and isinstance(now, dict) and isinstance(live[key], dict):
            _prune(live[key], before, now, field_schema)
        elif isinstance(before, list) and isinstance(now, list) and isinstance(live[key], list):
            merge_key = field_schema.merge_key if field_schema is not None else None
            strategy = (field_schema.strategy or "") if field_schema is not None else ""
            if "merge" not in strategy.split(","):
                continue  # replaced whole by the merge that follows
            if merge_key is None:
                gone = [v for v in before if v not in now]
                live[key] = [v for v in live[key] if v not in gone]
                continue
            keyed_now = {repr(i.get(merge_key)): i for i in now if isinstance(i, dict)}
            keyed_before = {repr(i.get(merge_key)): i for i in before if isinstance(i, dict)}
            items_schema = field_schema.items if field_schema is not None else None
            kept = []
            for item in live[key]:
                k = repr(item.get(merge_key)) if isinstance(item, dict) else None
                if k in keyed_before and k not in keyed_now:
                    continue
                if k in keyed_before and k in keyed_now:
                    _prune(item, keyed_before[k], keyed_now[k], items_schema)
                kept.append(item)
            live[key] = kept
