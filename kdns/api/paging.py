"""Lists as kube-apiserver serves them: `limit` / `continue` pages of one consistent
snapshot, and `resourceVersion` / `resourceVersionMatch`; and what a watch asks for
(`sendInitialEvents`, `allowWatchBookmarks`), checked as the API server checks it.

A paged list is a snapshot at the resource version of its first page: every later page
is cut from the same state, whatever was written in between. kube-apiserver reads that
state from etcd at the token's revision; kdns rebuilds it from the current objects and
the store's bounded event log, undoing, newest first, each change made after the
token's version (an Event carries the object before the change). Once the log no
longer reaches back that far the token has expired, as etcd's compaction expires it:
410 Expired, with a token for the inconsistent remainder in the Status, as the API
server answers.

The continue token is the API server's: unpadded URL-safe base64 of
`{"v":"meta.k8s.io/v1","rv":<version>,"start":"<key>\\u0000"}`, where the key is
`namespace/name` (all namespaces) or `name`, so that clients which look inside it
(none should) see what they know. Pages are in that key's string order, etcd's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kdns.api import status
from kdns.api.status import ApiError
from kdns.registry.errors import Expired
from kdns.registry.objects import ADDED, NAMESPACED_KINDS, KubeObject
from kdns.registry.store import Store

__all__ = ["ListOptions", "Page", "WatchOptions", "list_options", "page", "watch_options"]

ENCODING = "meta.k8s.io/v1"
EXACT = "Exact"
NOT_OLDER_THAN = "NotOlderThan"
# A token from a 410 answer carries this version: the remainder, read from the current state.
INCONSISTENT = -1

CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)
LIST_EXPIRED = "The resourceVersion for the provided list is too old."


@dataclass(frozen=True, slots=True)
class ListOptions:
    """What a list request asks for, checked."""

    limit: int | None  # None: everything
    start: str  # the first key the page may hold ("" for the first page)
    token_version: int | None  # the snapshot a continue token names; None: no token
    resource_version: int | None  # None: the latest ("" or "0")
    exact: bool  # resourceVersionMatch=Exact


@dataclass(frozen=True, slots=True)
class Page:
    items: list[KubeObject]
    resource_version: int
    continue_token: str | None
    remaining: int | None  # remainingItemCount: set only for unfiltered lists


def _invalid(causes: list[tuple[str, str]]) -> ApiError:
    # As ValidateListOptions: NewInvalid(meta.k8s.io ListOptions, "", errs).
    reason = "FieldValueNotSupported" if causes[0][1].startswith("Unsupported") else "FieldValueForbidden"
    return status.invalid("ListOptions", "", causes, group="meta.k8s.io", reason=reason)


def list_options(query: Mapping[str, str]) -> ListOptions:
    """The list options of a request's query (400 / 422 as kube-apiserver words them)."""
    raw_limit = query.get("limit", "")
    limit: int | None = None
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise status.bad_request(f'limit: Invalid value: "{raw_limit}": must be an integer') from None
        if limit <= 0:  # the API server treats a limit of 0 or less as none
            limit = None
    raw_version = query.get("resourceVersion", "")
    match = query.get("resourceVersionMatch", "")
    token = query.get("continue", "")
    causes: list[tuple[str, str]] = []
    if match:
        if not raw_version:
            causes.append(("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"))
        if token:
            causes.append(("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden when continue is provided"))
        if match not in (EXACT, NOT_OLDER_THAN):
            causes.append(("resourceVersionMatch", f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""'))
        elif match == EXACT and raw_version == "0":
            causes.append(("resourceVersionMatch", 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
    if "sendInitialEvents" in query:
        causes.append(("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for list"))
    if causes:
        raise _invalid(causes)
    resource_version: int | None = None
    if raw_version not in ("", "0"):
        try:
            resource_version = int(raw_version)
        except ValueError:
            raise status.bad_request(f'resourceVersion: Invalid value: "{raw_version}": must be an integer') from None
    if not token:
        return ListOptions(limit, "", None, resource_version, match == EXACT)
    if resource_version is not None:
        raise status.bad_request("specifying resource version is not allowed when using continue")
    start, version = decode_token(token)
    return ListOptions(limit, start, version, None, False)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """Where a watch starts and what it is sent besides changes."""

    # None: start with the current objects as ADDED events; else the changes after it.
    resource_version: int | None
    initial_events_end: bool  # sendInitialEvents=true: a bookmark marks the end of them
    bookmarks: bool  # allowWatchBookmarks=true


def _truth(value: str) -> bool:
    # strconv.ParseBool, as the API server decodes query booleans.
    return value in ("1", "t", "T", "true", "TRUE", "True")


def watch_options(query: Mapping[str, str], current: int) -> WatchOptions:
    """The watch options of a request's query (422 as validateWatchOptions words them,
    with the WatchList feature on, as it is from Kubernetes 1.32)."""
    match = query.get("resourceVersionMatch", "")
    given = query.get("sendInitialEvents")
    causes: list[tuple[str, str]] = []
    if given is not None and match != NOT_OLDER_THAN:
        causes.append(("resourceVersionMatch", "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
    if match:
        if given is None:
            causes.append(("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
        if match != NOT_OLDER_THAN:
            causes.append(("resourceVersionMatch", f'Unsupported value: "{match}": supported values: "NotOlderThan"'))
        if query.get("continue"):
            causes.append(("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden when continue is provided"))
    if causes:
        raise _invalid(causes)
    raw_version = query.get("resourceVersion", "")
    version: int | None = None
    if raw_version not in ("", "0"):
        try:
            version = int(raw_version)
        except ValueError:
            raise status.bad_request(f"resourceVersion: Invalid value: {raw_version!r}") from None
    bookmarks = _truth(query.get("allowWatchBookmarks", ""))
    if given is None:  # the classic watch: "" and "0" start with the current objects
        return WatchOptions(version, False, bookmarks)
    if _truth(given):
        # The current state is never older than the version asked for.
        if version is not None and version > current:
            raise _too_large(version, current)
        return WatchOptions(None, True, bookmarks)
    # sendInitialEvents=false: changes only, from the version given or from now.
    return WatchOptions(current if version is None else version, False, bookmarks)


def encode_token(start: str, resource_version: int) -> str:
    body = json.dumps({"v": ENCODING, "rv": resource_version, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, int]:
    """(start key, resource version) of a continue token; 400 as the API server words it."""
    def refuse(why: str) -> ApiError:
        return status.bad_request(f"invalid continue token: continue key is not valid: {why}")

    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(data)
    except (binascii.Error, ValueError) as exc:
        raise refuse(str(exc)) from None
    if not isinstance(body, dict):
        raise refuse("not an object")
    if body.get("v") != ENCODING:
        raise refuse(f"server does not recognize this encoded version {body.get('v')!r}")
    version, start = body.get("rv"), body.get("start")
    if not isinstance(version, int) or isinstance(version, bool) or version == 0 or version < INCONSISTENT:
        raise refuse(f"incorrect encoded start resourceVersion (version {ENCODING})")
    if not isinstance(start, str) or not start:
        raise refuse(f"encoded start key empty (version {ENCODING})")
    return start, version


def _too_large(wanted: int, current: int) -> ApiError:
    # storage.NewTooLargeResourceVersionError, after the API server's wait for it ran out.
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {wanted}, current: {current}",
        {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
    )


def snapshot(store: Store, kind: str, namespace: str | None, resource_version: int) -> list[KubeObject]:
    """The objects of `kind` (in `namespace`) as they were at `resource_version`, in no
    particular order; Expired when the event log no longer reaches back that far."""
    current = {(o.meta.namespace, o.meta.name): o for o in store.list(kind, namespace)}
    # Newest first, each change undone: what was there before it comes back.
    for event in reversed(store.events_since(resource_version)):
        obj = event.object
        if obj.kind != kind or (namespace is not None and obj.meta.namespace != namespace):
            continue
        where = (obj.meta.namespace, obj.meta.name)
        if event.type == ADDED:
            current.pop(where, None)
        elif event.old is not None:
            current[where] = event.old
    return list(current.values())


def page(
    store: Store,
    kind: str,
    namespace: str | None,
    matches: Callable[[KubeObject], bool],
    options: ListOptions,
    *,
    filtered: bool,
) -> Page:
    """One page of the list `options` asks for; `matches` is the request's selector
    (`filtered`: it has label or field terms). Runs in one synchronous step, so the
    snapshot cannot change under it."""
    current = store.resource_version
    by_namespace = namespace is None and kind in NAMESPACED_KINDS
    objs: Sequence[KubeObject]
    if options.token_version is not None:
        version = current if options.token_version == INCONSISTENT else options.token_version
        try:
            objs = snapshot(store, kind, namespace, version) if version < current else store.list(kind, namespace)
        except Expired:
            error = status.gone(CONTINUE_EXPIRED)
            error.list_continue = encode_token(options.start, INCONSISTENT)
            raise error from None
    else:
        wanted = options.resource_version
        if wanted is not None and wanted > current:
            raise _too_large(wanted, current)
        version = current
        if options.exact and wanted is not None and wanted < current:
            try:
                objs = snapshot(store, kind, namespace, wanted)
            except Expired:
                raise status.gone(LIST_EXPIRED) from None
            version = wanted
        else:
            objs = store.list(kind, namespace)
    keyed = sorted(((_key(o, by_namespace), o) for o in objs), key=lambda pair: pair[0])
    chosen = [(key, o) for key, o in keyed if key >= options.start and matches(o)]
    limit = options.limit
    if limit is None or len(chosen) <= limit:
        return Page([o for _, o in chosen], version, None, None)
    last = chosen[limit - 1][0]
    token = encode_token(last + "\x00", version)
    remaining = None if filtered else len(chosen) - limit
    return Page([o for _, o in chosen[:limit]], version, token, remaining)


def _key(obj: KubeObject, by_namespace: bool) -> str:
    return f"{obj.meta.namespace}/{obj.meta.name}" if by_namespace else obj.meta.name

