"""Admission of one write: defaults, server-owned metadata, validation, IPs and node ports."""

from __future__ import annotations

import itertools
import textwrap
from typing import Any

import pytest

from kdns.registry import admission
from kdns.registry.admission import Context, admit, release
from kdns.registry.allocator import ClusterIPAllocator, NodePortAllocator, RangeFull
from kdns.registry.errors import Invalid
from kdns.registry.manifests import from_manifest, read_documents
from kdns.registry.objects import Service

NOW = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def context(*cidrs: str, low: int = 30000, high: int = 32767) -> Context:
    """An admission context with a fixed clock and numbered uids."""
    numbers = itertools.count(1)
    return Context(
        cluster_ips=ClusterIPAllocator(cidrs or ("10.96.0.0/12", "fd00:10:96::/112")),
        node_ports=NodePortAllocator(low, high),
        clock=lambda: NOW,
        new_uid=lambda: f"uid-{next(numbers)}",
    )


def doc(text: str) -> dict[str, Any]:
    (document,) = read_documents(textwrap.dedent(text))
    return document


def service(spec: str, name: str = "web") -> dict[str, Any]:
    """A Service document with this spec, written as YAML."""
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return doc(f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{body}\n")


def refusal(document: dict[str, Any], old: Any, ctx: Context) -> str:
    with pytest.raises(Invalid) as caught:
        admit(document, old, ctx, 9)
    return str(caught.value)


def state(ctx: Context) -> tuple[str, str, int]:
    """What the allocators would hand out next (then put back), to compare states."""
    savepoints = ctx.cluster_ips.savepoint(), ctx.node_ports.savepoint()
    taken = ctx.cluster_ips.allocate("IPv4"), ctx.cluster_ips.allocate("IPv6"), ctx.node_ports.allocate()
    ctx.cluster_ips.rollback(savepoints[0])
    ctx.node_ports.rollback(savepoints[1])
    return taken


WEB = textwrap.dedent("""
    selector: {app: web}
    ports:
      - name: http
        port: 80
""")


def test_service_defaults():
    """A minimal Service gets the API server's defaults and a cluster IP."""
    obj = admit(service(WEB), None, context(), 5)
    assert obj.manifest == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "uid-1",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "resourceVersion": "5",
            "generation": 1,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv4"],
            "clusterIP": "10.96.1.1",
            "clusterIPs": ["10.96.1.1"],
        },
    }
    assert obj.meta.resource_version == 5 and obj.cluster_ips == ("10.96.1.1",)


def test_admit_does_not_change_its_input():
    """The written document is copied, never changed."""
    document = service(WEB)
    before = repr(document)
    admit(document, None, context(), 1)
    assert repr(document) == before


def test_server_owned_metadata_is_replaced():
    """uid, creationTimestamp, resourceVersion, generation and selfLink from the client are not kept."""
    document = service(WEB)
    document["metadata"].update(uid="mine", creationTimestamp="1999-01-01T00:00:00Z", resourceVersion="77",
                                generation=12, selfLink="/x")
    metadata = admit(document, None, context(), 3).manifest["metadata"]
    assert metadata == {"name": "web", "namespace": "default", "uid": "uid-1",
                        "creationTimestamp": "2024-05-01T10:00:00Z", "resourceVersion": "3", "generation": 1}


def test_managed_fields_are_kept_carried_over_and_cleared():
    """managedFields a write carries are kept, a write without them keeps the stored ones, and [{}] clears them."""
    ctx = context()
    entries = [{"manager": "kubectl", "operation": "Apply"}]
    document = service(WEB)
    document["metadata"]["managedFields"] = entries
    first = admit(document, None, ctx, 1)
    assert first.manifest["metadata"]["managedFields"] == entries
    second = admit(service(WEB), first, ctx, 2)
    assert second.manifest["metadata"]["managedFields"] == entries
    cleared = service(WEB)
    cleared["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in admit(cleared, second, ctx, 3).manifest["metadata"]
    cleared["metadata"]["managedFields"] = "kubectl"
    with pytest.raises(Invalid, match=r"metadata\.managedFields"):
        admit(cleared, second, ctx, 3)


def test_restore_keeps_the_saved_identity_and_generation():
    """With restore, a saved document keeps its uid, creationTimestamp and generation, at its own version."""
    ctx = context()
    document = service(WEB)
    document["metadata"].update(uid="saved", creationTimestamp="2020-01-01T00:00:00Z", resourceVersion="77",
                                generation=4)
    metadata = admit(document, None, ctx, 77, restore=True).manifest["metadata"]
    assert (metadata["uid"], metadata["creationTimestamp"], metadata["resourceVersion"], metadata["generation"]) == (
        "saved", "2020-01-01T00:00:00Z", "77", 4)


def test_update_keeps_identity_and_bumps_generation_on_spec_changes():
    """An update keeps uid and creationTimestamp; generation counts spec changes only."""
    ctx = context()
    first = admit(service(WEB), None, ctx, 1)
    relabelled = service(WEB)
    relabelled["metadata"]["labels"] = {"team": "a"}
    second = admit(relabelled, first, ctx, 2)
    assert (second.meta.uid, second.meta.creation_timestamp) == ("uid-1", "2024-05-01T10:00:00Z")
    assert second.manifest["metadata"]["generation"] == 1
    third = admit(service(WEB.replace("80", "81")), second, ctx, 3)
    assert third.manifest["metadata"]["generation"] == 2


def test_node_port_service_defaults_and_allocation():
    """NodePort services get externalTrafficPolicy and a node port per port; one number shares a node port."""
    obj = admit(service("""
        type: NodePort
        selector: {app: dns}
        ports:
          - {name: dns, port: 53, protocol: UDP}
          - {name: dns-tcp, port: 53, protocol: TCP}
          - {name: metrics, port: 9153, targetPort: metrics}
    """), None, context(), 1)
    assert obj.manifest["spec"]["externalTrafficPolicy"] == "Cluster"
    assert [(p.port, p.protocol, p.target_port, p.node_port) for p in obj.ports] == [
        (53, "UDP", 53, 30086), (53, "TCP", 53, 30086), (9153, "TCP", "metrics", 30087),
    ]


def test_requested_node_port_is_honoured():
    """A requested node port is reserved; a later request for it is refused."""
    ctx = context()
    spec = "type: NodePort\nports: [{port: 80, nodePort: 30007}]"
    assert admit(service(spec), None, ctx, 1).ports[0].node_port == 30007
    assert refusal(service(spec, "other"), None, ctx) == (
        'Service "other" is invalid: spec.ports[0].nodePort: Invalid value: 30007: provided port is already allocated'
    )


def test_node_port_out_of_range_is_refused():
    """A node port outside the configured range is refused with the range."""
    assert refusal(service("type: NodePort\nports: [{port: 80, nodePort: 8080}]"), None, context()) == (
        'Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid '
        "range. The range of valid ports is 30000-32767"
    )


def test_load_balancer_services():
    """LoadBalancer services get node ports unless allocateLoadBalancerNodePorts is false."""
    ctx = context()
    with_ports = admit(service("type: LoadBalancer\nports: [{port: 443}]"), None, ctx, 1)
    assert with_ports.ports[0].node_port == 30086
    assert with_ports.manifest["spec"]["allocateLoadBalancerNodePorts"] is True
    without = admit(service("type: LoadBalancer\nallocateLoadBalancerNodePorts: false\nports: [{port: 443}]",
                            "lb2"), None, ctx, 2)
    assert without.ports[0].node_port is None


def test_headless_service_gets_no_address():
    """clusterIP None stays None: no allocation, one IP family for a service with a selector."""
    ctx = context()
    before = state(ctx)
    obj = admit(service("clusterIP: None\nselector: {app: db}"), None, ctx, 1)
    assert obj.headless and obj.cluster_ips == ()
    spec = obj.manifest["spec"]
    assert (spec["clusterIP"], spec["clusterIPs"]) == ("None", ["None"])
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])
    assert state(ctx) == before


def test_headless_service_without_selector_is_dual_stack():
    """A headless service without a selector takes both families on a dual-stack cluster."""
    spec = admit(service("clusterIP: None"), None, context(), 1).manifest["spec"]
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("RequireDualStack", ["IPv4", "IPv6"])
    spec = admit(service("clusterIP: None"), None, context("10.96.0.0/12"), 1).manifest["spec"]
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])


def test_external_name_service_gets_no_address():
    """ExternalName services get no cluster IP, no IP families, no internalTrafficPolicy."""
    ctx = context()
    before = state(ctx)
    obj = admit(service("type: ExternalName\nexternalName: db.example.com."), None, ctx, 1)
    assert obj.manifest["spec"] == {"type": "ExternalName", "externalName": "db.example.com.", "sessionAffinity": "None"}
    assert obj.external_name == "db.example.com"
    assert state(ctx) == before


def test_dual_stack_services():
    """PreferDualStack and RequireDualStack get one address per family, in family order."""
    ctx = context()
    assert admit(service(WEB + "ipFamilyPolicy: PreferDualStack"), None, ctx, 1).cluster_ips == (
        "10.96.1.1", "fd00:10:96::101")
    obj = admit(service(WEB + "ipFamilies: [IPv6, IPv4]", "v6first"), None, ctx, 2)
    assert obj.cluster_ips == ("fd00:10:96::102", "10.96.1.2")
    assert obj.manifest["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    only6 = admit(service(WEB + "ipFamilies: [IPv6]", "six"), None, ctx, 3)
    assert only6.cluster_ips == ("fd00:10:96::103",) and only6.ip_families == ("IPv6",)


def test_prefer_dual_stack_on_a_single_stack_cluster():
    """PreferDualStack settles for one family where only one is configured."""
    obj = admit(service(WEB + "ipFamilyPolicy: PreferDualStack"), None, context("10.96.0.0/12"), 1)
    assert obj.cluster_ips == ("10.96.1.1",) and obj.ip_families == ("IPv4",)


def test_require_dual_stack_on_a_single_stack_cluster_is_refused():
    """RequireDualStack cannot be met by a single-stack cluster."""
    assert refusal(service(WEB + "ipFamilyPolicy: RequireDualStack"), None, context("10.96.0.0/12")) == (
        'Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not '
        "configured for dual-stack services"
    )


def test_family_without_a_range_is_refused():
    """Allocating from an IP family with no service CIDR names the family."""
    assert refusal(service(WEB + "ipFamilies: [IPv6]"), None, context("10.96.0.0/12")) == (
        'Service "web" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'
    )


def test_explicit_cluster_ips():
    """A requested address is reserved, inside the range or not; a second request for it is refused."""
    ctx = context()
    assert admit(service(WEB + "clusterIP: 10.96.0.10"), None, ctx, 1).cluster_ips == ("10.96.0.10",)
    assert admit(service(WEB + "clusterIP: 172.20.0.10", "b"), None, ctx, 2).cluster_ips == ("172.20.0.10",)
    assert refusal(service(WEB + "clusterIP: 10.96.0.10", "c"), None, ctx) == (
        'Service "c" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.10"}: failed to allocate IP '
        "10.96.0.10: provided IP is already allocated"
    )


def test_explicit_primary_with_allocated_secondary():
    """RequireDualStack with one requested address allocates the other family."""
    obj = admit(service(WEB + "clusterIP: 10.96.0.10\nipFamilyPolicy: RequireDualStack"), None, context(), 1)
    assert obj.cluster_ips == ("10.96.0.10", "fd00:10:96::101")


def test_full_range_is_a_server_error():
    """When the range is exhausted the write fails with RangeFull, like the API server's 500."""
    ctx = context("192.168.0.0/30")
    admit(service(WEB), None, ctx, 1)
    admit(service(WEB, "b"), None, ctx, 2)
    with pytest.raises(RangeFull) as caught:
        admit(service(WEB, "c"), None, ctx, 3)
    assert str(caught.value) == "failed to allocate a serviceIP: range is full: 192.168.0.0/30"


def test_refused_write_leaves_allocators_unchanged():
    """An Invalid after some allocation has happened gives everything back, cursors included."""
    ctx = context()
    admit(service("type: NodePort\nports: [{port: 80, nodePort: 30007}]", "taken"), None, ctx, 1)
    before = state(ctx)
    bad = service("""
        type: NodePort
        ipFamilyPolicy: RequireDualStack
        ports:
          - {name: a, port: 80}
          - {name: b, port: 81, nodePort: 30007}
    """)
    assert "provided port is already allocated" in refusal(bad, None, ctx)
    assert state(ctx) == before


def test_update_keeps_omitted_cluster_ips_and_node_ports():
    """A re-applied manifest without clusterIP or nodePort keeps the allocated ones."""
    ctx = context()
    spec = "type: NodePort\nselector: {app: web}\nports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]"
    first = admit(service(spec), None, ctx, 1)
    before = state(ctx)
    second = admit(service(spec), first, ctx, 2)
    assert second.cluster_ips == first.cluster_ips
    assert [p.node_port for p in second.ports] == [p.node_port for p in first.ports] == [30086, 30087]
    assert second.manifest == {**first.manifest, "metadata": {**first.manifest["metadata"], "resourceVersion": "2"}}
    assert state(ctx) == before


def test_cluster_ip_may_not_change():
    """Changing the cluster IP of a service is refused."""
    ctx = context()
    first = admit(service(WEB), None, ctx, 1)
    assert refusal(service(WEB + "clusterIP: 10.96.0.99"), first, ctx) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set'
    )
    assert refusal(service(WEB + "clusterIP: None"), first, ctx) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"None"}: may not change once set'
    )


def test_dual_stack_upgrade_and_downgrade():
    """A secondary address can be added by policy and released only with SingleStack."""
    ctx = context()
    single = admit(service(WEB), None, ctx, 1)
    dual = admit(service(WEB + "ipFamilyPolicy: RequireDualStack"), single, ctx, 2)
    assert dual.cluster_ips == ("10.96.1.1", "fd00:10:96::101")
    assert refusal(service(WEB + "clusterIPs: [10.96.1.1]"), dual, ctx) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.1.1"}: `ipFamilyPolicy` must '
        "be set to 'SingleStack' when releasing the secondary clusterIP"
    )
    back = admit(service(WEB + "ipFamilyPolicy: SingleStack"), dual, ctx, 3)
    assert back.cluster_ips == ("10.96.1.1",) and back.ip_families == ("IPv4",)
    assert not ctx.cluster_ips.is_allocated("fd00:10:96::101")


def test_type_changes_release_and_allocate():
    """NodePort→ClusterIP releases node ports; →ExternalName releases the IP; →ClusterIP allocates again."""
    ctx = context()
    node_port = admit(service("type: NodePort\nports: [{port: 80}]"), None, ctx, 1)
    assert ctx.node_ports.is_allocated(30086)
    echoed = service("type: ClusterIP\nports: [{port: 80, nodePort: 30086}]")  # as `kubectl get -o yaml` shows it
    cluster_ip = admit(echoed, node_port, ctx, 2)
    assert cluster_ip.ports[0].node_port is None and not ctx.node_ports.is_allocated(30086)
    echoed = service(f"type: ExternalName\nexternalName: a.example\nclusterIP: {cluster_ip.cluster_ips[0]}")
    external = admit(echoed, cluster_ip, ctx, 3)
    assert external.cluster_ips == () and not ctx.cluster_ips.is_allocated("10.96.1.1")
    assert "ipFamilies" not in external.manifest["spec"]
    again = admit(service("ports: [{port: 80}]"), external, ctx, 4)
    assert again.cluster_ips == ("10.96.1.2",)


def test_release_gives_back_addresses_and_ports():
    """Deleting a service frees its cluster IPs and node ports."""
    ctx = context()
    obj = admit(service("type: NodePort\nipFamilyPolicy: PreferDualStack\nports: [{port: 80}]"), None, ctx, 1)
    assert isinstance(obj, Service)
    release(obj, ctx)
    assert not any(ctx.cluster_ips.is_allocated(ip) for ip in obj.cluster_ips)
    assert not ctx.node_ports.is_allocated(obj.ports[0].node_port)


def test_pod_defaults():
    """Pods get phase Pending, TCP container ports, and podIPs from podIP."""
    obj = admit(doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: web-0, labels: {app: web}}
        spec:
          containers: [{name: app, image: nginx, ports: [{name: http, containerPort: 8080}]}]
        status:
          podIP: 10.244.0.5
    """), None, context(), 1)
    assert obj.manifest["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert obj.manifest["status"] == {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}], "phase": "Pending"}
    assert obj.manifest["metadata"]["generation"] == 1


def test_pod_ip_wins_over_pod_ips():
    """As the v1 conversion does, podIP is authoritative when podIPs[0] differs; podIPs alone fills podIP."""
    conflicting = doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.2}]}
    """)
    assert admit(conflicting, None, context(), 1).pod_ips == ("10.0.0.1",)
    only_list = doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        status: {podIPs: [{ip: "fd00::5"}, {ip: 10.0.0.5}]}
    """)
    obj = admit(only_list, None, context(), 1)
    assert obj.manifest["status"]["podIP"] == "fd00::5" and obj.pod_ips == ("fd00::5", "10.0.0.5")


def test_namespace_defaults():
    """Namespaces are Active, labelled with their own name, and never have a namespace."""
    obj = admit({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "x"}},
                None, context(), 1)
    assert obj.manifest["metadata"]["labels"] == {admission.NAMESPACE_NAME_LABEL: "shop"}
    assert obj.manifest["status"] == {"phase": "Active"}
    assert "namespace" not in obj.manifest["metadata"] and "generation" not in obj.manifest["metadata"]


def test_endpoint_slice_defaults_and_immutable_address_type():
    """Slice ports default to TCP and name ""; addressType cannot change."""
    ctx = context()
    text = """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: ext-1, labels: {kubernetes.io/service-name: ext}}
        addressType: IPv4
        endpoints: [{addresses: [192.0.2.1]}]
        ports: [{port: 443}]
    """
    first = admit(doc(text), None, ctx, 1)
    assert first.manifest["ports"] == [{"port": 443, "name": "", "protocol": "TCP"}]
    assert refusal(doc(text.replace("IPv4", "FQDN").replace("192.0.2.1", "a.example")), first, ctx) == (
        'EndpointSlice.discovery.k8s.io "ext-1" is invalid: addressType: Invalid value: "FQDN": field is immutable'
    )


def test_timestamp_format():
    """Timestamps are RFC 3339 UTC seconds with a Z."""
    assert admission.timestamp(0) == "1970-01-01T00:00:00Z"
    assert admission.timestamp(NOW + 0.9) == "2024-05-01T10:00:00Z"


@pytest.mark.parametrize("spec", [
    WEB,
    ("type: NodePort\nselector: {app: web}\nports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}, "
     "{name: http, port: 80, nodePort: 30080}]"),
    "type: LoadBalancer\nports: [{name: http, port: 80}]",
    "type: LoadBalancer\nallocateLoadBalancerNodePorts: false\nports: [{name: http, port: 80}]",
    "ipFamilyPolicy: PreferDualStack\nports: [{name: http, port: 80}]",
    "ipFamilyPolicy: RequireDualStack\nipFamilies: [IPv6, IPv4]\nports: [{name: http, port: 80}]",
    "clusterIP: 10.96.0.77\nports: [{name: http, port: 80}]",
    "clusterIPs: [10.96.0.78]\nipFamilyPolicy: PreferDualStack\nports: [{name: http, port: 80}]",
    "clusterIP: None\nselector: {app: web}\nports: [{name: http, port: 80}]",
    "type: ExternalName\nexternalName: db.example.\nports: [{name: http, port: 80}]",
])
def test_an_admitted_service_is_what_its_document_reads_as(spec: str):
    """Admission reads the typed fields once, before it allocates, and then takes the
    addresses and node ports it wrote: the Service is what parsing its stored document
    gives (what a restore from documents, a replica or a worker makes of it)."""
    created = admit(service(spec), None, context(), 1)
    assert from_manifest(created.manifest) == created
