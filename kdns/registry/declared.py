"""Manifests as declared state: apply the files, and prune what they no longer declare.

Every object kdns applies from `--manifests` carries the annotation SOURCE, naming the
file it came from. Applying the files again (at start, and on SIGHUP) creates or updates
what they declare and deletes every object that carries the annotation but is declared
no more, as `kubectl apply --prune` does with an applyset: objects made through the API
have no such annotation, and are left alone. All of it is one transaction: a manifest
that is refused changes nothing.

`check` reads documents into a registry of their own, one transaction each, so that every
refusal is reported (`kdns validate`), with the same checks and messages as the API.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kdns.registry import objects
from kdns.registry.blockyaml import Remake
from kdns.registry.errors import NotFound, RegistryError
from kdns.registry.manifests import UNBUILT, Document, key_parts
from kdns.registry.objects import API_VERSIONS, EndpointSlice, KubeObject, may_mention
from kdns.registry.objects import NAMESPACE as NAMESPACE_KIND
from kdns.registry.store import Store, Transaction, apply_order

__all__ = ["SOURCE", "Applied", "apply", "check", "mark", "packer", "source_of"]

# The annotation naming the manifest file an object was applied from.
SOURCE = "kdns.dev/manifest-source"


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying the manifests did: how many documents (from how many files) were
    applied, and the objects (kind, namespace, name) pruned because their manifest no
    longer declares them."""

    documents: int
    pruned: tuple[tuple[str, str, str], ...]
    files: int = 0


def mark(documents: Iterable[Document]) -> None:
    """Annotate each document's body with the file it was read from (its absolute path,
    so that the annotation does not depend on the directory kdns was started in)."""
    resolved: dict[str, str] = {}
    for document in documents:
        _mark(document, resolved)


def _mark(document: Document, resolved: dict[str, str]) -> None:
    source = resolved.get(document.source)
    if source is None:
        source = resolved[document.source] = str(Path(document.source).resolve())
    _annotate(document.body, source)


def _annotate(body: Mapping[str, Any], source: str) -> None:
    metadata = body.get("metadata")
    if type(metadata) is not dict:
        return  # refused when applied, with its field path
    annotations = metadata.get("annotations")
    if annotations is None:
        metadata["annotations"] = {SOURCE: source}
    elif type(annotations) is dict:
        annotations[SOURCE] = source


def packer() -> Callable[[Document], Document]:
    """For read_paths' `keep`: each document marked (as `mark` does) and packed, with its
    apply_order, so that a start-up load holds packed bytes (about a fifth of the trees:
    a big cluster's 220 MiB of trees, all read before any is applied, set the process's
    peak and were resident long after) and the store unpacks one tree at a time. A
    document the reader can build anew (Document.remake: its values and its shape's
    plan, no bigger than the packed bytes) is kept as that instead, and marked again when
    built. A document whose body is not a dict, or holds what cannot be packed, is kept
    as it is (marked)."""
    resolved: dict[str, str] = {}
    orders: dict[str, int] = {}

    def pack(document: Document) -> Document:
        body = document.body
        if body is UNBUILT and document.remake is not None and document.key is not None:
            # Read without its tree (manifests.load_text): marked when built. It is no
            # Service, so its apply_order is its kind's.
            kind = document.key[0]
            order = orders.get(kind)
            if order is None:
                order = orders[kind] = apply_order({"kind": kind})
            source = resolved.get(document.source)
            if source is None:
                source = resolved[document.source] = str(Path(document.source).resolve())
            marked = Remade(document.remake, source)
            return Document(document.source, document.index, _EMPTY, document.item, document.key, marked, order)
        if type(body) is not dict:
            return document
        _mark(document, resolved)
        order = apply_order(document)
        # (Not dataclasses.replace: four times slower, a tenth of a second over a big load.)
        if document.remake is not None:  # built anew and marked again when applied
            marked = Remade(document.remake, resolved[document.source])
            return Document(document.source, document.index, _EMPTY, document.item, document.key, marked, order)
        try:
            packed = objects.pack(body)
        except ValueError:  # a value marshal does not take (a `!!timestamp` date): refused when applied
            return document
        return Document(document.source, document.index, _EMPTY, document.item, document.key, packed, order)

    return pack


class Remade:
    """A document the reader builds anew (Document.remake), marked as read_paths marked
    it: called, a new tree. A start-up's Deferred pod holds one until it is packed, so it
    is two slots (48 bytes a pod), not a functools.partial and its arguments' tuple
    (136 bytes)."""

    __slots__ = ("remake", "source")

    def __init__(self, remake: Remake, source: str) -> None:
        self.remake, self.source = remake, source

    def __call__(self) -> dict[str, Any]:
        body: dict[str, Any] = self.remake()
        _annotate(body, self.source)
        return body


_EMPTY: Mapping[str, Any] = MappingProxyType({})  # a packed document's body


def source_of(obj: KubeObject) -> str | None:
    """The manifest file `obj` was applied from, or None for an object made through the API."""
    if isinstance(obj, EndpointSlice) and obj.owner is not None:
        return None  # the EndpointSlice controller's: no annotations (objects.controller_manifest)
    if not may_mention(obj, SOURCE):  # most of a big registry: no need to unpack it
        return None
    metadata = obj.manifest.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    source = annotations.get(SOURCE) if isinstance(annotations, dict) else None
    return source if isinstance(source, str) else None


def apply(txn: Transaction, documents: Sequence[Document], *, owned: bool = False) -> Applied:
    """In `txn`: apply `documents` (marked) and prune the objects applied from manifests
    earlier that they no longer declare. A refusal raises (and the transaction changes
    nothing)."""
    # Looked for before the apply (which changes the objects, and with `owned` empties
    # each body): on a first start nothing was applied from a manifest yet, and the
    # 100,000 documents of a big cluster need no keys. Otherwise only the objects these
    # documents do not declare are read for their source (unpacked), not all of them.
    present = [obj for kind in API_VERSIONS for obj in txn.list(kind)]
    gone = []
    if any(source_of(obj) is not None for obj in present):
        declared = _keys(documents)
        gone = [obj for obj in present if (obj.kind, obj.meta.namespace, obj.meta.name) not in declared
                and source_of(obj) is not None]
    txn.apply_documents(documents, owned=owned)
    pruned = []
    if gone:
        # Namespaces last: deleting one deletes what is in it.
        gone.sort(key=lambda obj: obj.kind == NAMESPACE_KIND)
        for obj in gone:
            try:
                txn.delete(obj.kind, obj.meta.namespace, obj.meta.name)
            except NotFound:  # its namespace went first
                continue
            pruned.append((obj.kind, obj.meta.namespace, obj.meta.name))
    return Applied(len(documents), tuple(pruned))


def _keys(documents: Sequence[Document]) -> set[tuple[str, str, str]]:
    """The (kind, namespace, name) each document declares; one that has none is left out
    here, and refused, with its file and document, when it is applied."""
    keys = set()
    for document in documents:
        if document.key is not None:
            keys.add(document.key)
            continue
        try:
            keys.add(key_parts(document.body))
        except RegistryError:
            continue
    return keys


def check(
    documents: Sequence[Document],
    service_cidrs: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    node_port_range: tuple[int, int],
) -> list[RegistryError]:
    """Every refusal the registry would give `documents`, each naming its file and document:
    they are applied to an empty registry of their own, one transaction each."""
    store = Store(service_cidrs=service_cidrs, node_port_range=node_port_range)
    errors: list[tuple[int, RegistryError]] = []
    # Applied in apply_order (what a document needs first), reported in the files' order.
    for position, document in sorted(enumerate(documents), key=lambda item: apply_order(item[1])):
        try:
            with store.transaction() as txn:
                txn.apply_documents([document])
        except RegistryError as exc:
            errors.append((position, exc))
    return [error for _, error in sorted(errors, key=lambda item: item[0])]
