"""API discovery: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`.

Both forms kubectl v1.32 understands: the aggregated `apidiscovery.k8s.io/v2`
APIGroupDiscoveryList (one request answers everything), sent when the client asks for it in
`Accept`, and the legacy APIVersions / APIGroupList / APIResourceList otherwise. The client
tells the two apart by the response's Content-Type (client-go discovery_client.go).
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from kdns import __version__
from kdns.api.openapi import KUBERNETES_VERSION
from kdns.api.resources import (
    GROUP_VERSIONS,
    RESOURCES,
    STATUS_VERBS,
    Resource,
    in_group_version,
)

AGGREGATED = {
    "v2": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "v2beta1": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
}


def version() -> dict[str, Any]:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    return {
        "major": major,
        "minor": minor,
        # Semver build metadata: clients that parse the version still see 1.32.0.
        "gitVersion": f"{KUBERNETES_VERSION}+kdns.{__version__}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{platform.machine()}",
    }


def _api_resource(resource: Resource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        main["shortNames"] = list(resource.short_names)
    if resource.categories:
        main["categories"] = list(resource.categories)
    subs = [
        {
            "name": f"{resource.plural}/{sub}",
            "singularName": "",
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(STATUS_VERBS),
        }
        for sub in resource.subresources
    ]
    return [main, *subs]


def resource_list(group_version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r for res in in_group_version(group_version) for r in _api_resource(res)],
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _groups() -> list[str]:
    return list(dict.fromkeys(r.group for r in RESOURCES if r.group))


def api_group(group: str) -> dict[str, Any]:
    versions = [
        {"groupVersion": gv, "version": gv.split("/", 1)[1]}
        for gv in GROUP_VERSIONS
        if gv.startswith(group + "/")
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {k: v for k, v in api_group(g).items() if k not in ("kind", "apiVersion")}
            for g in _groups()
        ],
    }


def _discovery_resource(resource: Resource) -> dict[str, Any]:
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    body: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": kind,
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        body["shortNames"] = list(resource.short_names)
    if resource.categories:
        body["categories"] = list(resource.categories)
    if resource.subresources:
        body["subresources"] = [
            {"subresource": sub, "responseKind": kind, "verbs": list(STATUS_VERBS)}
            for sub in resource.subresources
        ]
    return body


def aggregated(core: bool, version: str = "v2") -> dict[str, Any]:
    """The APIGroupDiscoveryList of `/api` (core=True) or `/apis`."""
    groups = [""] if core else _groups()
    items = []
    for group in groups:
        versions = []
        for gv in GROUP_VERSIONS:
            resources = [r for r in in_group_version(gv) if r.group == group]
            if not resources:
                continue
            versions.append(
                {
                    "version": resources[0].version,
                    "resources": [_discovery_resource(r) for r in resources],
                    "freshness": "Current",
                }
            )
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
