"""The resource handlers: get, list, create, update (PUT), patch (merge, strategic merge,
JSON patch, server-side apply) and delete, each write in one store transaction.

kdns plays the whole control plane, kubelet included, so a write to the main resource may
carry `status` (that is how a pod gets its IP); a PUT without `status` keeps the stored
one. Writes to `/status` change only `status`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from kdns.api import endpoints, leases, ownership, paging, patch, status, tables
from kdns.api.context import BACKEND, CLOCK, EVENTS, STORE
from kdns.api.encoding import (
    APPLY_PATCH,
    MERGE_PATCH,
    PATCH_TYPES,
    STRATEGIC_PATCH,
    decode,
    delete_options,
    flag,
    is_dry_run,
    json_response,
    loads_json,
    loads_yaml,
    media_type,
    object_response,
    read_body,
    read_document,
    render,
    wants_table,
)
from kdns.api.middleware import yield_to_dns
from kdns.api.resources import BY_KIND as RESOURCE_OF_KIND
from kdns.api.resources import UNSERVED
from kdns.api.selectors import SelectorError, parse_label_selector
from kdns.api.status import ApiError
from kdns.api.targets import Target, selector_of
from kdns.registry import admission, schema
from kdns.registry import errors as registry_errors
from kdns.registry.events import METADATA_FIELDS, field_matcher
from kdns.registry.manifests import copy_tree, to_manifest
from kdns.registry.objects import SERVICE, KubeObject, ObjectReference
from kdns.registry.store import Transaction


def get(request: web.Request, target: Target) -> web.Response:
    store = request.app[STORE]
    assert target.name is not None
    obj = store.get(target.resource.kind, target.namespace or "", target.name)
    if obj is None:
        raise status.not_found(target.resource.group_resource, target.name)
    return render(request, target.resource, obj)


def unserved(request: web.Request, target: Target) -> web.Response:
    """A subresource kdns cannot serve (resources.UNSERVED): 404 when the object is not
    there, as kube-apiserver looks the object up first, else 501 saying why."""
    assert target.name is not None and target.subresource is not None
    resource = target.resource
    if request.app[STORE].get(resource.kind, target.namespace or "", target.name) is None:
        raise status.not_found(resource.group_resource, target.name)
    why = UNSERVED[(resource.plural, target.subresource)]
    raise status.not_implemented(f"{resource.plural}/{target.subresource} is not served: {why}")


def list_objects(request: web.Request, target: Target) -> web.Response:
    store = request.app[STORE]
    selector = selector_of(request, target)
    resource = target.resource
    # One synchronous step: the page and its version come from the same snapshot.
    listed = paging.page(
        store,
        resource.kind,
        selector.namespace,
        selector.matches,
        paging.list_options(request.query),
        filtered=bool(selector.labels or selector.fields),
    )
    docs = [to_manifest(o) for o in listed.items]
    metadata: dict[str, Any] = {"resourceVersion": str(listed.resource_version)}
    if listed.continue_token is not None:
        metadata["continue"] = listed.continue_token
    if listed.remaining is not None:
        metadata["remainingItemCount"] = listed.remaining
    table_version = wants_table(request)
    if table_version is not None:
        body = tables.table(
            resource.kind,
            docs,
            request.app[CLOCK](),
            resource_version=str(listed.resource_version),
            include_object=request.query.get("includeObject", "Metadata"),
            api_version=table_version,
        )
        body["metadata"] = metadata
        return json_response(body)
    return object_response(
        request,
        {"kind": resource.list_kind, "apiVersion": resource.group_version, "metadata": metadata, "items": docs},
        resource.list_kind,
    )


def derived(request: web.Request, target: Target) -> web.Response:
    """GET and LIST of what is made when read: Endpoints from the EndpointSlices
    (endpoints.py), node Leases from the Nodes (leases.py), Events from the event log
    (registry/events.py)."""
    if request.method != "GET" or target.watch_path or flag(request, "watch") or target.subresource:
        raise status.method_not_allowed(request.method)
    if target.resource.kind == endpoints.ENDPOINTS:
        # An Endpoints object has its Service's name, namespace and labels: select Services.
        selector = selector_of(request, dataclasses.replace(target, resource=RESOURCE_OF_KIND[SERVICE]))
        docs = endpoints.listed(request.app[STORE], selector.namespace, selector.matches)
    elif target.resource.kind == leases.LEASE:
        docs = _selected(request, target, leases.listed(request.app[STORE], target.namespace), METADATA_FIELDS)
    else:
        docs = _selected(request, target, request.app[EVENTS].events(target.namespace))
    if target.name is not None:
        if not docs:
            raise status.not_found(target.resource.group_resource, target.name)
        return render(request, target.resource, docs[0])
    version = str(request.app[STORE].resource_version)
    table_version = wants_table(request)
    if table_version is not None:
        body = tables.table(
            target.resource.kind, docs, request.app[CLOCK](), resource_version=version,
            include_object=request.query.get("includeObject", "Metadata"), api_version=table_version,
        )
        return json_response(body)
    return json_response(
        {"kind": target.resource.list_kind, "apiVersion": target.resource.group_version, "metadata": {"resourceVersion": version}, "items": docs}
    )


def _selected(
    request: web.Request, target: Target, docs: list[dict[str, Any]],
    selectable: Mapping[str, Callable[[Mapping[str, Any]], str]] | None = None,
) -> list[dict[str, Any]]:
    """The `docs` the request's name, labelSelector and fieldSelector (over `selectable`,
    default an Event's fields) take."""
    try:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = field_matcher(request.query.get("fieldSelector", ""), selectable)
    except (SelectorError, ValueError) as exc:
        raise status.bad_request(str(exc)) from None
    return [
        doc for doc in docs
        if fields(doc) and (target.name is None or doc["metadata"]["name"] == target.name)
        and all(r.matches(doc["metadata"].get("labels") or {}) for r in labels)
    ]


def _place(doc: dict[str, Any], target: Target, *, creating: bool) -> dict[str, Any]:
    """Check the body's namespace and name against the URL; fill in what it leaves out."""
    metadata = doc["metadata"]
    if target.resource.namespaced:
        given = metadata.get("namespace")
        if given and given != target.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = target.namespace
    else:
        metadata.pop("namespace", None)
    if target.name is not None:
        name = metadata.get("name")
        if name and name != target.name:
            raise status.bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({target.name})"
            )
        metadata["name"] = target.name
    elif creating and not metadata.get("name") and metadata.get("generateName"):
        # generateName: the API server appends five random lower-case alphanumerics.
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        metadata["name"] = metadata["generateName"] + "".join(random.choices(alphabet, k=5))  # noqa: S311  (a name, not a secret)
    return doc


async def _commit(
    request: web.Request, write: Callable[[Any], Any], *, dry_run: bool, writing: Mapping[str, Any] | None = None
) -> Any:
    """Run `write(txn)` in one transaction through the backend and return what it
    returned (the object as stored, with its resource version); a dry run commits nothing.
    A Service (`writing`) refused for want of a ClusterIP or NodePort is also said in a
    Warning Event about it, as a controller says why it could not do its work."""
    try:
        result = await request.app[BACKEND].write(write, dry_run=dry_run)
    except (admission.AllocationFailed, admission.RangeExhausted) as exc:
        if not dry_run and writing is not None:
            _allocation_event(request, writing, exc)
        raise
    # Committed: the DNS datagrams that waited for the commit are answered before the
    # reply is rendered (the object is as stored; nothing done meanwhile changes it).
    await yield_to_dns()
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class _Change:
    """The document a write makes from the stored object, and whether it creates it."""

    doc: dict[str, Any]
    creates: bool = False
    # The stored object the change was made from and its document as unpacked for that
    # (left unchanged): the commit reads it instead of unpacking the object again.
    read: tuple[KubeObject, dict[str, Any]] | None = None

    # What the commit admitted: [the object, its document] (Transaction.admitted), when it
    # wrote one, for the reply.
    admitted: list[Any] = dataclasses.field(default_factory=list)

    def __call__(self, txn: Transaction) -> KubeObject:
        if self.creates:
            return txn.create(self.doc)
        written = txn.update(self.doc, read=self.read)
        document = txn.admitted(written)
        self.admitted[:] = () if document is None else (written, document)
        return written

    def reply(self, result: KubeObject) -> KubeObject | dict[str, Any]:
        """What to render of the commit's `result`: the document it admitted, if `result`
        is the object written with it (with an etcd backend, a copy at etcd's revision is
        not), else `result` itself (unpacked when rendered)."""
        admitted = self.admitted
        return admitted[1] if admitted and admitted[0] is result else result


async def _commit_from_current(
    request: web.Request, target: Target, make: Callable[[KubeObject | None], _Change], *, dry_run: bool
) -> tuple[_Change, Any]:
    """Commit `make(current)`, the change made from the object `target` names as stored
    (None when there is none); return it and what the commit returned.

    Making the document (the patch, decoding, managedFields) is one slice of the event
    loop and the commit (admission, the EndpointSlice controller, the DNS index) the next,
    about as long: the DNS datagrams that came in meanwhile are answered in between
    (`yield_to_dns`; bench/loopsteps.py times the slices). A change made from a stored
    object names that object's resource version, so a write that changed it in between
    gets the commit refused (Conflict, or NotFound or AlreadyExists for one that deleted
    or created it); then the change is made again from the object as it is now and
    committed in the same slice, as it was before the yield, so a write answers as though
    nothing had come between: one that names no version (or the current one) is applied,
    one that names a stale version is refused."""
    store = request.app[STORE]
    kind, namespace, name = target.resource.kind, target.namespace or "", target.name or ""
    current = store.get(kind, namespace, name)
    change = make(current)
    await yield_to_dns()
    try:
        return change, await _commit(request, change, dry_run=dry_run, writing=change.doc)
    except (registry_errors.Conflict, registry_errors.NotFound, registry_errors.AlreadyExists):
        now = store.get(kind, namespace, name)
        if _version(now) == _version(current):
            raise  # not the yield's doing: the write's own
    change = make(now)
    return change, await _commit(request, change, dry_run=dry_run, writing=change.doc)


def _version(obj: KubeObject | None) -> int | None:
    return None if obj is None else obj.meta.resource_version


# Who says so in the Event (`source.component`), as kube-apiserver's own controllers name themselves.
EVENT_COMPONENT = "kdns-apiserver"


def _allocation_event(
    request: web.Request, writing: Mapping[str, Any], exc: admission.AllocationFailed | admission.RangeExhausted
) -> None:
    metadata = writing.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    if not name:
        return
    # The stored Service, when an update was refused; a reference to the one a refused create named.
    stored = request.app[STORE].get(SERVICE, namespace, name)
    involved = stored if stored is not None else ObjectReference(SERVICE, namespace, name)
    # The causes alone for an Invalid: the Event is about the Service already.
    causes = exc.causes if isinstance(exc, admission.AllocationFailed) else ()
    message = "; ".join(f"{path}: {text}" for path, text in causes) or str(exc)
    request.app[EVENTS].record(involved, "Warning", f"FailedToAllocate{exc.what}", message, component=EVENT_COMPONENT)


def _now(request: web.Request) -> str:
    return _timestamp(math.floor(request.app[CLOCK]()))


@functools.lru_cache(maxsize=4)
def _timestamp(second: int) -> str:
    """A managedFields time (RFC 3339, to the second), made once per second: writes that
    come together share it, and strftime was a tenth of a status patch's bookkeeping."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def _record_update(request: web.Request, target: Target, doc: dict[str, Any], live: dict[str, Any] | None) -> None:
    """Record the write of `doc` over `live` (None: a create) in its managedFields as an
    Update operation (ownership.updated), over the managedFields the writer sent, if any,
    else the live ones. `[{}]` clears them all, recording nothing, as the API server does."""
    metadata = doc["metadata"]
    given = metadata.get("managedFields")
    if given == [{}]:
        return
    if isinstance(given, list) and given:
        base = given
    else:
        base = (live or {}).get("metadata", {}).get("managedFields") or []
    resource = target.resource
    manager = ownership.manager_of(request.query.get("fieldManager"), request.headers.get("User-Agent", ""))
    metadata["managedFields"] = ownership.updated(
        base, manager, live, doc, schema.BY_KIND[resource.kind], resource.group_version, _now(request),
        target.subresource,
    )


async def create(request: web.Request, target: Target) -> web.Response:
    doc = _place(await read_document(request, target.resource), target, creating=True)
    dry_run = is_dry_run(request)
    _record_update(request, target, doc, None)
    _, result = await _commit_from_current(request, target, lambda _: _Change(doc, creates=True), dry_run=dry_run)
    return render(request, target.resource, result, 201)


def _live(request: web.Request, target: Target) -> Any:
    assert target.name is not None
    obj = request.app[STORE].get(target.resource.kind, target.namespace or "", target.name)
    if obj is None:
        raise status.not_found(target.resource.group_resource, target.name)
    return obj


def _status_only(live: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A /status write: the live object with the new status (and the new resourceVersion
    precondition, if any); metadata, spec and the rest are not changed through /status."""
    result = dict(live)
    result.pop("status", None)
    if "status" in new:
        result["status"] = new["status"]
    metadata = dict(result.get("metadata", {}))
    new_version = new.get("metadata", {}).get("resourceVersion")
    if new_version:
        metadata["resourceVersion"] = new_version
    result["metadata"] = metadata
    return result


async def update(request: web.Request, target: Target) -> web.Response:
    body = _place(await read_document(request, target.resource), target, creating=False)
    dry_run = is_dry_run(request)

    def make(current: KubeObject | None) -> _Change:
        if current is None:
            raise status.not_found(target.resource.group_resource, target.name or "")
        live = to_manifest(current)
        doc: dict[str, Any] = copy_tree(body)
        if target.subresource == "status":
            doc = _status_only(live, doc)
        else:
            if "status" not in doc and "status" in live:
                doc["status"] = live["status"]
            if not doc["metadata"].get("resourceVersion"):  # made from `live`: a change of it
                doc["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        _record_update(request, target, doc, live)
        return _Change(doc, read=(current, live))

    change, result = await _commit_from_current(request, target, make, dry_run=dry_run)
    return render(request, target.resource, change.reply(result))


async def patch_object(request: web.Request, target: Target) -> web.Response:
    media = media_type(request)
    if media not in PATCH_TYPES:
        raise status.unsupported_media_type(media, PATCH_TYPES)
    body = await read_body(request)
    dry_run = is_dry_run(request)
    resource = target.resource
    kind_schema = schema.BY_KIND[resource.kind]
    store = request.app[STORE]
    assert target.name is not None
    current = store.get(resource.kind, target.namespace or "", target.name)

    if media == APPLY_PATCH:
        return await _apply(request, target, loads_yaml(body), dry_run)
    if current is None:
        raise status.not_found(resource.group_resource, target.name)

    patch_doc, duplicates = loads_json(body)

    def make(current: KubeObject | None) -> _Change:
        if current is None:
            raise status.not_found(resource.group_resource, target.name or "")
        live = to_manifest(current)
        try:
            if media == MERGE_PATCH:
                if not isinstance(patch_doc, dict):
                    raise patch.BadPatch("a merge patch must be a JSON object")
                patched = patch.merge_patch(live, patch_doc)
            elif media == STRATEGIC_PATCH:
                patched = patch.strategic_merge_patch(live, patch_doc, kind_schema)
            else:
                patched = patch.json_patch(live, patch_doc)
        except patch.BadPatch as exc:
            raise status.bad_request(str(exc)) from None
        except patch.PatchError as exc:
            raise status.unprocessable(str(exc)) from None
        doc = _place(decode(request, resource, patched, duplicates), target, creating=False)
        if target.subresource == "status":
            doc = _status_only(live, doc)
        # A patch applies to what was read: the same version, unless it names one itself.
        doc["metadata"].setdefault("resourceVersion", live["metadata"].get("resourceVersion"))
        _record_update(request, target, doc, live)
        return _Change(doc, read=(current, live))

    change, result = await _commit_from_current(request, target, make, dry_run=dry_run)
    return render(request, resource, change.reply(result))


async def _apply(request: web.Request, target: Target, config: Any, dry_run: bool) -> web.Response:
    """Server-side apply, approximated: create the object, or merge the configuration into it."""
    resource = target.resource
    if not request.query.get("fieldManager"):
        raise status.invalid(
            "PatchOptions",
            "",
            [("fieldManager", "Required value: is required for apply patch")],
            group="meta.k8s.io",
            reason="FieldValueRequired",
        )
    if not isinstance(config, dict):
        raise status.bad_request("an apply patch must be a YAML or JSON object")
    for required in ("apiVersion", "kind"):
        if not config.get(required):
            raise status.bad_request(f"{required} must be set in an apply patch")
    config = _place(decode(request, resource, config), target, creating=False)
    manager = request.query["fieldManager"]
    kind_schema = schema.BY_KIND[resource.kind]
    fields = ownership.fields_of(config, kind_schema)
    now = _now(request)

    def make(current: KubeObject | None) -> _Change:
        if current is None:
            if target.subresource == "status":
                raise status.not_found(resource.group_resource, target.name or "")
            managed = ownership.record([], manager, fields, resource.group_version, now)
            return _Change({**config, "metadata": {**config["metadata"], "managedFields": managed}}, creates=True)
        live = to_manifest(current)
        entries = [e for e in live["metadata"].get("managedFields") or [] if isinstance(e, dict)]
        mine = next((e for e in entries if e.get("manager") == manager and e.get("operation") == ownership.APPLY), None)
        found = ownership.conflicts(fields, [e for e in entries if e is not mine], live, config)
        if found and not flag(request, "force"):
            raise _apply_conflict(found)
        taken = {path for _, path in found}
        # What the manager owns is what it applied last: its Apply entry's fields. Before
        # it has one, kubectl's own manager takes over what `kubectl apply` applied
        # client-side (csaupgrade), whose last-applied annotation says what that was.
        by_kubectl = manager == KUBECTL_MANAGER
        if mine is not None and isinstance(mine.get("fieldsV1"), dict):
            previous = ownership.skeleton(mine["fieldsV1"])
        else:
            previous = _last_applied(live) if by_kubectl else None
        merged = patch.apply_configuration(live, config, kind_schema, previous)
        if by_kubectl and _last_applied(live) is not None:
            # As kube-apiserver's lastAppliedUpdater: an apply by "kubectl" keeps the
            # client-side annotation, where there is one, equal to what was applied.
            annotations = merged["metadata"].setdefault("annotations", {})
            annotations[LAST_APPLIED] = _configuration_text(config)
        merged["metadata"]["managedFields"] = ownership.record(
            entries, manager, fields, resource.group_version, now, taken
        )
        if target.subresource == "status":
            merged = _status_only(live, merged)
        if not config["metadata"].get("resourceVersion"):
            merged["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        return _Change(merged)

    change, result = await _commit_from_current(request, target, make, dry_run=dry_run)
    return render(request, resource, result, 201 if change.creates else 200)


def _apply_conflict(found: list[tuple[str, ownership.Path]]) -> ApiError:
    """409 as the API server words an apply's conflicts with other managers."""
    count = f"{len(found)} conflict{'s' if len(found) > 1 else ''}"
    lines = [f"conflict with {manager}: {ownership.path_text(path)}" for manager, path in found]
    message = f"Apply failed with {count}: " + (lines[0] if len(lines) == 1 else "\n" + "\n".join(f"- {line}" for line in lines))
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {manager}", "field": ownership.path_text(path)}
        for manager, path in found
    ]
    return ApiError(409, "Conflict", message, {"causes": causes})


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


KUBECTL_MANAGER = "kubectl"


def _last_applied(live: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration kubectl last applied (client-side, or server-side: kubectl keeps
    the annotation current in both), or None."""
    text = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        previous = json.loads(text)
    except ValueError:
        return None
    return previous if isinstance(previous, dict) else None


def _configuration_text(config: dict[str, Any]) -> str:
    applied = json.loads(json.dumps(config))
    metadata = applied.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if not annotations:
        metadata.pop("annotations", None)
    return json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"


async def delete(request: web.Request, target: Target) -> web.Response:
    options = delete_options(request, await read_body(request))
    dry_run = is_dry_run(request, options)
    live = _live(request, target)
    preconditions = options.get("preconditions") or {}
    assert target.name is not None
    if preconditions.get("uid") and preconditions["uid"] != live.meta.uid:
        raise status.conflict(
            target.resource.group_resource,
            target.name,
            f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {live.meta.uid}",
        )
    wanted_version = preconditions.get("resourceVersion")
    if wanted_version and wanted_version != str(live.meta.resource_version):
        raise status.conflict(
            target.resource.group_resource,
            target.name,
            f"Precondition failed: ResourceVersion in precondition: {wanted_version}, "
            f"ResourceVersion in object meta: {live.meta.resource_version}",
        )
    await _commit(
        request,
        lambda txn: txn.delete(target.resource.kind, target.namespace or "", target.name),
        dry_run=dry_run,
    )
    return render(request, target.resource, live)
