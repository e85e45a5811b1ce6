"""Reading Kubernetes documents, and turning them into registry objects and back."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.registry import manifests
from kdns.registry.errors import Invalid, ManifestError
from kdns.registry.manifests import (
    Document,
    copy_tree,
    from_manifest,
    load_paths,
    load_text,
    read_documents,
    read_paths,
    to_manifest,
)
from kdns.registry.objects import (
    ContainerPort,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Node,
    NodeAddress,
    ObjectReference,
    Pod,
    Service,
    ServicePort,
)


def doc(text: str) -> dict:
    """The one document of a YAML text."""
    (document,) = read_documents(textwrap.dedent(text))
    return document


def invalid_message(text: str) -> str:
    """The message from_manifest refuses a YAML document with."""
    with pytest.raises(Invalid) as caught:
        from_manifest(doc(text))
    return str(caught.value)


SERVICE = """
    apiVersion: v1
    kind: Service
    metadata:
      name: web
      namespace: shop
      labels: {app: web}
      resourceVersion: "7"
      uid: 0b5c2c6e-0000-4000-8000-000000000001
      creationTimestamp: 2024-05-01T10:00:00Z
    spec:
      type: ClusterIP
      clusterIP: 10.96.1.1
      clusterIPs: [10.96.1.1, "fd00:10:96::101"]
      ipFamilies: [IPv4, IPv6]
      ipFamilyPolicy: RequireDualStack
      selector: {app: web}
      ports:
        - {name: http, port: 80, targetPort: http, protocol: TCP}
        - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
      someFutureField: {kept: true}
"""


# --- Reading documents -------------------------------------------------------------------------


def test_read_documents_skips_empty_documents():
    """Empty documents and comment-only documents are skipped; the others come back in order."""
    text = "---\n# nothing\n---\nkind: Namespace\napiVersion: v1\nmetadata: {name: a}\n---\n---\n{kind: Pod}\n"
    assert read_documents(text) == [
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "a"}},
        {"kind": "Pod"},
    ]


def test_read_documents_reads_json():
    """JSON is YAML: a JSON object is one document."""
    assert read_documents('{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}') == [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    ]


def test_read_documents_expands_lists():
    """A v1 List and a typed list such as ServiceList become their items."""
    text = textwrap.dedent("""
        apiVersion: v1
        kind: List
        items:
          - {apiVersion: v1, kind: Namespace, metadata: {name: a}}
          - {apiVersion: v1, kind: Namespace, metadata: {name: b}}
        ---
        apiVersion: v1
        kind: ServiceList
        metadata: {resourceVersion: "12"}
        items:
          - {apiVersion: v1, kind: Service, metadata: {name: c}}
    """)
    assert [d["metadata"]["name"] for d in read_documents(text)] == ["a", "b", "c"]


def test_read_documents_keeps_timestamps_as_strings():
    """An unquoted RFC 3339 time stays the string Kubernetes means, not a datetime."""
    document = doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, creationTimestamp: 2024-05-01T10:00:00Z, deletionTimestamp: 2024-05-01 10:00:00}
    """)
    assert document["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    assert document["metadata"]["deletionTimestamp"] == "2024-05-01 10:00:00"


def test_read_documents_names_the_document_with_a_yaml_error():
    """A syntax error names the source, the document and the line."""
    text = "kind: Namespace\n---\nkind: Pod\nmetadata: {name: [\n"
    with pytest.raises(ManifestError) as caught:
        read_documents(text, "zones/web.yaml")
    assert str(caught.value) == (
        "zones/web.yaml: document 2: YAML syntax error at line 5, column 1: "
        "did not find expected node content"
    )
    assert (caught.value.source, caught.value.index) == ("zones/web.yaml", 2)


def test_read_documents_refuses_a_document_that_is_not_a_mapping():
    """A document must be a mapping."""
    with pytest.raises(ManifestError) as caught:
        read_documents("kind: Namespace\n---\n- a\n- b\n")
    assert str(caught.value) == "<input>: document 2: must be a mapping, not a list"


def test_read_documents_refuses_a_list_item_that_is_not_a_mapping():
    """Each item of a List must be a mapping too."""
    with pytest.raises(ManifestError) as caught:
        read_documents("kind: List\napiVersion: v1\nitems: [{kind: Pod}, 3]\n", "x.yaml")
    assert str(caught.value) == "x.yaml: document 1: items[1]: must be a mapping, not a number"


def test_load_text_records_where_each_document_came_from():
    """Documents carry their source, 1-based index and List position."""
    text = "kind: Namespace\n---\n---\nkind: List\nitems: [{kind: Pod}, {kind: Node}]\n"
    assert load_text(text, "f.yaml") == [
        Document("f.yaml", 1, {"kind": "Namespace"}),
        Document("f.yaml", 3, {"kind": "Pod"}, 0),
        Document("f.yaml", 3, {"kind": "Node"}, 1),
    ]


def test_document_error_names_the_document():
    """Document.error turns a refusal into a ManifestError that says which document it was."""
    refusal = Invalid("Service", "web", [("spec.ports[0].port", "Invalid value: 70000: x")])
    assert str(Document("zones/web.yaml", 2, {}).error(refusal)) == (
        'zones/web.yaml: document 2: Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: x'
    )
    assert str(Document("l.yaml", 1, {}, 4).error(refusal)).startswith('l.yaml: document 1: items[4]: Service "web"')


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_load_paths_reads_a_directory_recursively_in_a_stable_order(tmp_path: Path):
    """A directory's *.yaml, *.yml and *.json files are read in every subdirectory, sorted by
    their path, part by part; hidden files and directories are left out."""
    write(tmp_path / "b.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n")
    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    write(tmp_path / "c.json", '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}')
    write(tmp_path / "README.md", "not: read\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write(tmp_path / "sub" / "d.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n")
    write(tmp_path / "sub" / "deeper" / "e.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: e}\n")
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".git" / "f.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: f}\n")
    write(tmp_path / ".hidden.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: g}\n")
    documents, warnings = load_paths([tmp_path])
    assert [d.body["metadata"]["name"] for d in documents] == ["a", "b", "c", "d", "e"]
    assert warnings == []


def test_an_empty_file_is_noted(tmp_path: Path):
    """A file without a document (empty, or only comments) is a warning naming it."""
    write(tmp_path / "empty.yaml", "# nothing here yet\n")
    documents, warnings = load_paths([tmp_path])
    assert documents == []
    assert warnings == [f"{tmp_path / 'empty.yaml'}: no documents (the file is empty)"]


SERVICE_WITH_TYPOS = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selectr:
    app: web
  ports:
    - name: http
      port: 80
      targetPrt: 8080
"""


def test_unknown_fields_are_refused_with_their_paths(tmp_path: Path):
    """Misspelled fields are refused as kubectl's strict field validation refuses them:
    every unknown field, by its path, in the API's words."""
    path = write(tmp_path / "web.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + SERVICE_WITH_TYPOS)
    with pytest.raises(ManifestError) as caught:
        load_paths([path])
    assert str(caught.value) == (
        f'{path}: document 2: Service "web": strict decoding error: unknown field "spec.selectr", '
        'unknown field "spec.ports[0].targetPrt"'
    )


def test_unknown_fields_of_documents_of_one_shape_are_each_reported(tmp_path: Path):
    """Documents of one shape (the reader builds the second on from a plan, and strict
    decoding's verdict is kept by shape) are each refused, naming their own document, and
    one of the same shape but another kind is judged by its own kind's fields."""
    pod = "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: p{n}\nspec:\n  selector:\n    app: web\n"
    path = write(tmp_path / "pods.yaml", "---\n".join(pod.format(kind="Pod", n=n) for n in range(4))
                 + "---\n" + pod.format(kind="Service", n=9))
    loaded = read_paths([path])
    assert [str(error) for error in loaded.errors] == [
        f'{path}: document {n + 1}: Pod "p{n}": strict decoding error: unknown field "spec.selector"' for n in range(4)]
    assert [document.key for document in loaded.documents] == [("Service", "default", "p9")]


def test_unknown_fields_in_open_parts_are_kept(tmp_path: Path):
    """Parts of a document kdns does not read (a container's image, resources) take any field."""
    path = write(tmp_path / "pod.yaml", """\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: c
              image: nginx
              anything: [1, 2]
              ports:
                - containerPort: 80
                  contianerPort: 81
    """)
    with pytest.raises(ManifestError) as caught:
        load_paths([path])
    assert str(caught.value) == (
        f'{path}: document 1: Pod "p": strict decoding error: unknown field "spec.containers[0].ports[0].contianerPort"'
    )


@pytest.mark.parametrize("fast", [True, False], ids=["block-yaml", "pyyaml"])
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, fast: bool):
    """A key given twice in one mapping is refused (YAML would keep the last one), naming
    the line of the second; the flow style goes through PyYAML, the block style first
    through the block reader."""
    ports = "  ports: [{port: 80, port: 81}]\n" if not fast else "  ports:\n    - port: 80\n      port: 81\n"
    path = write(tmp_path / "web.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n" + ports)
    with pytest.raises(ManifestError) as caught:
        load_paths([path])
    line = 6 if not fast else 8
    assert str(caught.value) == f'{path}: document 1: line {line}: strict decoding error: duplicate field "port"'


def test_an_object_declared_twice_is_refused_with_both_places(tmp_path: Path):
    """Two documents with the same kind, namespace and name are an error naming both."""
    first = write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n")
    second = write(tmp_path / "b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n"
                   "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n")
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path])
    assert str(caught.value) == (
        f'{second}: document 2: Service "default/web" is declared twice: first in {first}: document 1'
    )


def test_read_paths_reports_every_error_at_once(tmp_path: Path):
    """read_paths goes on after an error: every file and document with a problem is listed."""
    write(tmp_path / "a.yaml", SERVICE_WITH_TYPOS)
    write(tmp_path / "b.yaml", "kind: [\n")
    write(tmp_path / "c.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {adresses: []}\n")
    loaded = read_paths([tmp_path, tmp_path / "missing"])
    assert [str(error) for error in loaded.errors] == [
        (f'{tmp_path / "a.yaml"}: document 1: Service "web": strict decoding error: unknown field "spec.selectr", '
         'unknown field "spec.ports[0].targetPrt"'),
        f"{tmp_path / 'b.yaml'}: document 1: YAML syntax error at line 2, column 1: did not find expected node content",
        f'{tmp_path / "c.yaml"}: document 1: Node "n": strict decoding error: unknown field "status.adresses"',
        f"{tmp_path / 'missing'}: no such file or directory",
    ]
    assert loaded.files == [tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"]


# Block documents of one shape, each three times (the reader builds the second and third
# of a shape by its plan, and read_paths with a `keep` reads their keys without building
# them: load_text's `unbuilt`), good and bad in every way the key can be.
_POD = ("apiVersion: {version}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
         "spec:\n  containers:\n    - name: c\n      image: i\n")
_SHAPES = [
    {"version": "v1", "kind": "Pod", "name": "p{n}", "namespace": "team"},
    {"version": "v1", "kind": "Pod", "name": "same", "namespace": "team"},  # declared three times
    {"version": "v1", "kind": "Pod", "name": "{n}", "namespace": "team"},  # a number: refused when applied
    {"version": "v1", "kind": "Pod", "name": "q{n}", "namespace": "''"},  # the default namespace
    {"version": "v1", "kind": "Pod", "name": "r{n}", "namespace": "[x]"},  # not a string
    {"version": "v2", "kind": "Pod", "name": "s{n}", "namespace": "team"},  # no such apiVersion
    {"version": "apps/v1", "kind": "Deployment", "name": "d{n}", "namespace": "team"},  # skipped
    {"version": "v1", "kind": "Service", "name": "w{n}", "namespace": "team"},  # built (apply_order reads it)
    {"version": "v1", "kind": "Node", "name": "n{n}", "namespace": "team"},  # a cluster kind: no namespace
    {"version": "v1", "kind": "Pod", "name": "''", "namespace": "team"},  # no name: refused when applied
    {"version": "v1", "kind": "Pod", "name": "~", "namespace": "team"},  # null
    {"version": '"v1"', "kind": '"Pod"', "name": '"t{n}"', "namespace": "'team'"},  # quoted: the same key
]


def test_documents_read_without_their_tree_are_read_as_whole_ones(tmp_path: Path):
    """read_paths with a `keep` reads the key of a planned document from its scalars; it
    finds the same keys, errors (with their document) and warnings as a whole read, and
    each document builds the body the whole read has."""
    texts = [_POD.format(**{k: v.format(n=n) for k, v in shape.items()}) for shape in _SHAPES for n in range(3)]
    texts += [_POD.format(version="v1", kind="Pod", name="p9", namespace="team") + "  extra: 1\n"] * 3
    text = "---\n".join(texts) + "---\n" + "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n"
    write(tmp_path / "a.yaml", text)
    whole, kept = read_paths([tmp_path]), read_paths([tmp_path], lambda document: document)
    assert sum(d.body is manifests.UNBUILT for d in kept.documents) >= 4  # the fast path was taken
    assert [str(e) for e in kept.errors] == [str(e) for e in whole.errors]
    assert kept.warnings == whole.warnings
    assert [(d.source, d.index, d.item, d.key) for d in kept.documents] == [
        (d.source, d.index, d.item, d.key) for d in whole.documents]
    assert [dict(d.tree()) for d in kept.documents] == [dict(d.body) for d in whole.documents]
    where = f"{tmp_path / 'a.yaml'}: document"
    assert [str(e) for e in kept.errors] == [
        f'{where} 5: Pod "team/same" is declared twice: first in {where} 4',
        f'{where} 6: Pod "team/same" is declared twice: first in {where} 4',
        *(f'{where} {22 + n}: Service "w{n}": strict decoding error: unknown field "spec.containers"' for n in range(3)),
        *(f'{where} {25 + n}: Node "n{n}": strict decoding error: unknown field "spec.containers"' for n in range(3)),
        *(f'{where} {n}: Pod "p9": strict decoding error: unknown field "spec.extra"' for n in (37, 38, 39)),
    ]
    assert kept.warnings == [f"{where} {n}: skipped Deployment (apps/v1): kdns does not serve this kind"
                             for n in (19, 20, 21)]


def test_a_yaml_error_after_documents_of_one_shape_keeps_them_and_its_line(tmp_path: Path):
    """Planned documents before a YAML error (the whole text then read by PyYAML) are
    kept, with or without a `keep`, and the error names its document and line."""
    pods = "---\n".join(_POD.format(version="v1", kind="Pod", name=f"p{n}", namespace="team") for n in range(4))
    write(tmp_path / "a.yaml", pods + "---\nkind: [\n")
    for loaded in (read_paths([tmp_path]), read_paths([tmp_path], lambda document: document)):
        assert [d.key for d in loaded.documents] == [("Pod", "team", f"p{n}") for n in range(4)]
        assert [str(e) for e in loaded.errors] == [
            f"{tmp_path / 'a.yaml'}: document 5: YAML syntax error at line 42, column 1: did not find expected node content"]


def test_load_paths_skips_kinds_kdns_does_not_serve(tmp_path: Path):
    """A Deployment or ConfigMap is left out with a warning naming file, document and kind."""
    path = write(tmp_path / "app.yaml", """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
    """)
    documents, warnings = load_paths([path])
    assert [d.index for d in documents] == [2]
    assert warnings == [
        f"{path}: document 1: skipped Deployment (apps/v1): kdns does not serve this kind",
        f"{path}: document 3: skipped ConfigMap (v1): kdns does not serve this kind",
    ]


def test_load_paths_refuses_a_missing_path(tmp_path: Path):
    """A path that does not exist is an error, not an empty cluster."""
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path / "nope"])
    assert str(caught.value) == f"{tmp_path / 'nope'}: no such file or directory"


def test_load_paths_refuses_a_file_that_is_not_utf8(tmp_path: Path):
    """A file that cannot be decoded names itself."""
    (tmp_path / "bad.yaml").write_bytes(b"kind: \xff\n")
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path])
    assert str(caught.value).startswith(f"{tmp_path / 'bad.yaml'}: cannot read: ")


# --- Kinds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"apiVersion": "v1", "metadata": {"name": "x"}}, "Object 'Kind' is missing"),
        ({"kind": "Service", "metadata": {"name": "x"}}, "Object 'apiVersion' is missing"),
        ({"apiVersion": "apps/v1", "kind": "Deployment"}, 'no matches for kind "Deployment" in version "apps/v1"'),
        ({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice"},
         'no matches for kind "EndpointSlice" in version "discovery.k8s.io/v1beta1"'),
        ({"apiVersion": "v1", "kind": "Endpoints"}, 'no matches for kind "Endpoints" in version "v1"'),
    ],
)
def test_from_manifest_refuses_kinds_it_does_not_serve(document, message):
    """A document without a kind kdns serves cannot be read at all."""
    with pytest.raises(ManifestError) as caught:
        from_manifest(document)
    assert str(caught.value) == message


def test_key_of_defaults_the_namespace():
    """A namespaced document without a namespace lives in default; cluster-scoped ones in ""."""
    assert str(manifests.key_of({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})) == "Pod default/p"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}
    assert str(manifests.key_of(node)) == "Node n"


# --- Typed fields ----------------------------------------------------------------------------------


def test_service_typed_fields():
    """A Service's typed fields come from its spec."""
    service = from_manifest(doc(SERVICE))
    assert isinstance(service, Service)
    assert service.meta.name == "web" and service.meta.namespace == "shop"
    assert service.meta.labels == {"app": "web"}
    assert service.meta.resource_version == 7
    assert service.meta.uid == "0b5c2c6e-0000-4000-8000-000000000001"
    assert service.meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert service.type == "ClusterIP"
    assert service.cluster_ips == ("10.96.1.1", "fd00:10:96::101")
    assert not service.headless
    assert service.ip_families == ("IPv4", "IPv6")
    assert service.selector == {"app": "web"}
    assert service.ports == (
        ServicePort("http", "TCP", 80, "http"),
        ServicePort("dns", "UDP", 53, 5353),
    )
    assert service.external_name is None
    assert not service.publish_not_ready_addresses


def test_from_manifest_keeps_a_deep_copy_with_unknown_fields():
    """The manifest is the whole document, unknown fields included, and independent of the input."""
    document = doc(SERVICE)
    service = from_manifest(document)
    document["spec"]["someFutureField"]["kept"] = False
    document["metadata"]["labels"]["app"] = "changed"
    assert service.manifest["spec"]["someFutureField"] == {"kept": True}
    assert service.manifest["metadata"]["labels"] == {"app": "web"}
    assert service.meta.labels == {"app": "web"}


def test_headless_service():
    """clusterIP None is a headless service: no cluster IPs."""
    service = from_manifest(doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: db}
        spec: {clusterIP: None, clusterIPs: [None], selector: {app: db}}
    """))
    assert service.headless and service.cluster_ips == () and service.ports == ()
    assert service.meta.namespace == "default"


def test_cluster_ip_alone_is_the_cluster_ips():
    """An old client's spec.clusterIP alone gives the cluster IPs."""
    service = from_manifest(doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec: {clusterIP: 10.96.0.10, ports: [{port: 53, protocol: UDP, targetPort: 53}]}
    """))
    assert service.cluster_ips == ("10.96.0.10",)


def test_external_name_service():
    """externalName loses its trailing dot and is lower-cased; a service without a selector has {}."""
    service = from_manifest(doc("""
        apiVersion: v1
        kind: Service
        metadata: {name: search}
        spec: {type: ExternalName, externalName: WWW.Example.COM.}
    """))
    assert service.type == "ExternalName"
    assert service.external_name == "www.example.com"
    assert service.selector == {}
    assert service.cluster_ips == () and not service.headless


def test_pod_typed_fields():
    """A Pod's typed fields come from its spec and status."""
    pod = from_manifest(doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: web-0, namespace: shop, labels: {app: web}, deletionTimestamp: "2024-05-01T10:00:00Z"}
        spec:
          hostname: web-0
          subdomain: web
          nodeName: node-1
          containers:
            - name: app
              ports: [{name: http, containerPort: 8080, protocol: TCP}, {containerPort: 9090, protocol: UDP}]
            - name: sidecar
              ports: [{name: metrics, containerPort: 9100, protocol: TCP}]
        status:
          phase: Running
          podIP: 10.244.1.5
          podIPs: [{ip: 10.244.1.5}, {ip: "fd00:244::5"}]
          conditions:
            - {type: PodScheduled, status: "True"}
            - {type: Ready, status: "True"}
    """))
    assert isinstance(pod, Pod)
    assert pod.pod_ips == ("10.244.1.5", "fd00:244::5")
    assert pod.phase == "Running" and pod.ready
    assert (pod.hostname, pod.subdomain, pod.node_name) == ("web-0", "web", "node-1")
    assert pod.container_ports == (
        ContainerPort("http", 8080, "TCP"), ContainerPort("", 9090, "UDP"), ContainerPort("metrics", 9100, "TCP"),
    )
    assert pod.meta.deletion_timestamp == "2024-05-01T10:00:00Z"


def test_pod_ip_alone_and_not_ready():
    """status.podIP alone gives the pod IPs; a Ready condition that is not "True" is not ready."""
    pod = from_manifest(doc("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        status: {podIP: 10.244.0.9, conditions: [{type: Ready, status: "False"}]}
    """))
    assert pod.pod_ips == ("10.244.0.9",) and not pod.ready and pod.phase == "Pending"


def test_node_and_namespace_typed_fields():
    """A Node has its status addresses; both cluster-scoped kinds have namespace ""."""
    node = from_manifest(doc("""
        apiVersion: v1
        kind: Node
        metadata: {name: node-1}
        status:
          addresses: [{type: InternalIP, address: 192.168.1.10}, {type: Hostname, address: node-1}]
    """))
    assert isinstance(node, Node)
    assert node.addresses == (NodeAddress("InternalIP", "192.168.1.10"), NodeAddress("Hostname", "node-1"))
    assert node.internal_ips == ("192.168.1.10",)
    namespace = from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    assert isinstance(namespace, Namespace) and namespace.key.namespace == ""


def test_endpoint_slice_typed_fields():
    """An EndpointSlice has its endpoints, conditions, hostnames, node names, targets and ports."""
    endpoint_slice = from_manifest(doc("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: db-abc12
          labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: people}
        addressType: IPv4
        endpoints:
          - addresses: [10.0.0.1]
            conditions: {ready: true, serving: true, terminating: false}
            hostname: db-0
            nodeName: node-1
            targetRef: {kind: Pod, namespace: default, name: db-0, uid: u1}
          - addresses: [10.0.0.2]
        ports:
          - {name: sql, port: 5432, protocol: TCP}
    """))
    assert isinstance(endpoint_slice, EndpointSlice)
    assert endpoint_slice.address_type == "IPv4"
    assert endpoint_slice.service_name == "db" and endpoint_slice.managed_by == "people"
    assert endpoint_slice.endpoints == (
        Endpoint(("10.0.0.1",), EndpointConditions(True, True, False), "db-0", "node-1",
                 ObjectReference("Pod", "default", "db-0", "u1")),
        Endpoint(("10.0.0.2",)),
    )
    assert endpoint_slice.endpoints[1].is_ready  # unknown readiness counts as ready
    assert endpoint_slice.ports == (EndpointPort("sql", 5432, "TCP"),)


def test_to_manifest_fills_metadata_from_the_object():
    """to_manifest is a copy of the manifest with the metadata the registry assigned."""
    pod = from_manifest({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": [1]}})
    pod = manifests.with_resource_version(pod, 42)
    out = to_manifest(pod)
    assert out == {
        "apiVersion": "v1", "kind": "Pod", "spec": {"x": [1]},
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "42"},
    }
    out["spec"]["x"].append(2)
    assert pod.manifest["spec"] == {"x": [1]}
    assert pod.meta.resource_version == 42


# --- Validation -----------------------------------------------------------------------------------

DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
QUALIFIED_NAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def svc(spec: str, name: str = "web") -> str:
    """A Service document with this spec (YAML flow mapping)."""
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {spec}\n"


PORT = "ports: [{port: 80, protocol: TCP, targetPort: 80}]"

INVALID = [
    # Service names are DNS-1035 labels.
    (svc("{" + PORT + "}", "1web"), f'Service "1web" is invalid: metadata.name: Invalid value: "1web": {DNS1035}'),
    (svc("{" + PORT + "}", "w" * 64),
     (f'Service "{"w" * 64}" is invalid: metadata.name: Invalid value: "{"w" * 64}": must be no more than 63 '
     "characters")),
    ("apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {" + PORT + "}\n",
     'Service "" is invalid: metadata.name: Required value: name or generateName is required'),
    (svc("{" + PORT + ", type: Magic}"),
     ('Service "web" is invalid: spec.type: Unsupported value: "Magic": supported values: "ClusterIP", '
     '"ExternalName", "LoadBalancer", "NodePort"')),
    (svc("{ports: [{port: 70000, protocol: TCP, targetPort: 80}]}"),
     'Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive'),
    (svc("{ports: [{protocol: TCP, targetPort: 80}]}"),
     'Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'),
    (svc("{ports: [{port: 80, protocol: HTTP, targetPort: 80}]}"),
     ('Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", '
     '"TCP", "UDP"')),
    (svc("{ports: [{port: 80, targetPort: 80}]}"),
     'Service "web" is invalid: spec.ports[0].protocol: Required value'),
    (svc('{ports: [{port: 80, protocol: TCP, targetPort: "8080"}]}'),
     ('Service "web" is invalid: spec.ports[0].targetPort: Invalid value: "8080": must contain at least one '
     "letter (a-z)")),
    (svc("{ports: [{port: 80, protocol: TCP, targetPort: 0}]}"),
     'Service "web" is invalid: spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive'),
    (svc("{ports: [{port: 80, protocol: TCP, targetPort: 80}, {port: 81, protocol: TCP, targetPort: 81}]}"),
     'Service "web" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]'),
    (svc("{ports: [{name: a, port: 80, protocol: TCP, targetPort: 80}, {name: a, port: 80, protocol: TCP, "
         "targetPort: 80}]}"),
     ('Service "web" is invalid: [spec.ports[1].name: Duplicate value: "a", spec.ports[1]: Duplicate value: '
     '{"port": 80, "protocol": "TCP"}]')),
    (svc("{ports: [{name: Http, port: 80, protocol: TCP, targetPort: 80}]}"),
     f'Service "web" is invalid: spec.ports[0].name: Invalid value: "Http": {DNS1123_LABEL}'),
    (svc("{ports: [{port: 80, protocol: TCP, targetPort: 80, nodePort: 30007}]}"),
     "Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (svc("{type: NodePort, ports: [{port: 80, protocol: TCP, targetPort: 80, nodePort: 70000}]}"),
     ('Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 70000: must be between 1 and 65535, '
     "inclusive")),
    (svc("{" + PORT + "}").replace("spec: {", "spec: {clusterIP: 10.96.0.300, "),
     f'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.300": {IP}'),
    (svc("{clusterIP: 10.96.0.1, clusterIPs: [10.96.0.2], " + PORT + "}"),
     ('Service "web" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.2"}: first value must match '
     "`clusterIP`")),
    (svc("{clusterIPs: [10.96.0.1, 10.96.0.2], " + PORT + "}"),
     ('Service "web" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.1", "10.96.0.2"}: may specify '
     "no more than one IP for each IP family")),
    (svc("{clusterIPs: [10.96.0.1], ipFamilies: [IPv6], " + PORT + "}"),
     ('Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.1"}: expected an IPv6 value '
     "as indicated by `ipFamilies[0]`")),
    (svc("{ipFamilies: [IPv4, IPv4], ipFamilyPolicy: RequireDualStack, " + PORT + "}"),
     'Service "web" is invalid: spec.ipFamilies[1]: Duplicate value: "IPv4"'),
    (svc("{ipFamilies: [IPv5], " + PORT + "}"),
     'Service "web" is invalid: spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"'),
    (svc("{ipFamilyPolicy: Sometimes, " + PORT + "}"),
     ('Service "web" is invalid: spec.ipFamilyPolicy: Unsupported value: "Sometimes": supported values: '
     '"PreferDualStack", "RequireDualStack", "SingleStack"')),
    (svc("{ipFamilies: [IPv4, IPv6], ipFamilyPolicy: SingleStack, " + PORT + "}"),
     ("Service \"web\" is invalid: spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' "
     "or 'PreferDualStack' when multiple IP families are specified")),
    (svc("{" + PORT + ", sessionAffinity: Sticky}"),
     ('Service "web" is invalid: spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
     '"ClientIP", "None"')),
    (svc("{" + PORT + ", externalTrafficPolicy: Local}"),
     ("Service \"web\" is invalid: spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set when "
     "`type` is 'NodePort' or 'LoadBalancer'")),
    (svc("{}"), 'Service "web" is invalid: spec.ports: Required value'),
    (svc("{" + PORT + ", selector: {app: 'no spaces'}}"),
     f'Service "web" is invalid: spec.selector: Invalid value: "no spaces": {LABEL_VALUE}'),
    (svc("{type: ExternalName}"), 'Service "web" is invalid: spec.externalName: Required value'),
    (svc("{type: ExternalName, externalName: 'bad_name.example'}"),
     f'Service "web" is invalid: spec.externalName: Invalid value: "bad_name.example": {DNS1123_SUBDOMAIN}'),
    (svc("{type: ExternalName, externalName: a.example, clusterIP: 10.96.0.5}"),
     'Service "web" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services'),
    (svc("{" + PORT + ", publishNotReadyAddresses: 'yes please'}"),
     'Service "web" is invalid: spec.publishNotReadyAddresses: Invalid value: "yes please": must be a boolean'),
    (svc("[1, 2]"), 'Service "web" is invalid: [spec: Invalid value: [1, 2]: must be an object, spec.ports: Required value]'),
    # Metadata of every kind.
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: Shop}\n",
     f'Namespace "Shop" is invalid: metadata.name: Invalid value: "Shop": {DNS1123_LABEL}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: Shop}\n",
     f'Pod "p" is invalid: metadata.namespace: Invalid value: "Shop": {DNS1123_LABEL}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p_1}\n",
     f'Pod "p_1" is invalid: metadata.name: Invalid value: "p_1": {DNS1123_SUBDOMAIN}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {'bad key!': x}}\n",
     f'Pod "p" is invalid: metadata.labels: Invalid value: "bad key!": {QUALIFIED_NAME}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {'Example.com/app': x}}\n",
     f'Pod "p" is invalid: metadata.labels: Invalid value: "Example.com/app": prefix part {DNS1123_SUBDOMAIN}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {version: 1.0}}\n",
     'Pod "p" is invalid: metadata.labels.version: Invalid value: 1.0: must be a string'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: '" + "v" * 64 + "'}}\n",
     f'Pod "p" is invalid: metadata.labels: Invalid value: "{"v" * 64}": must be no more than 63 characters'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, resourceVersion: abc}\n",
     'Pod "p" is invalid: metadata.resourceVersion: Invalid value: "abc": must be a decimal integer'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, resourceVersion: \"\u00b2\"}\n",  # a digit to str.isdigit
     'Pod "p" is invalid: metadata.resourceVersion: Invalid value: "\u00b2": must be a decimal integer'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: [web]}, annotations: {a: [1]}}\n",  # unhashable
     ('Pod "p" is invalid: [metadata.labels.app: Invalid value: []string{"web"}: must be a string, '
     "metadata.annotations.a: Invalid value: [1]: must be a string]")),
    ("apiVersion: v1\nkind: Pod\nmetadata: [p]\n", 'Pod "" is invalid: metadata: Invalid value: []string{"p"}: must be an object'),
    # Pods.
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.256}\n",
     f'Pod "p" is invalid: status.podIP: Invalid value: "10.0.0.256": {IP}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]}\n",
     ('Pod "p" is invalid: status.podIPs: Invalid value: []string{"10.0.0.2"}: may specify no more than one IP '
     "for each IP family")),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.2}]}\n",
     'Pod "p" is invalid: status.podIPs[0].ip: Invalid value: "10.0.0.2": must match status.podIP'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Sleeping}\n",
     ('Pod "p" is invalid: status.phase: Unsupported value: "Sleeping": supported values: "Failed", "Pending", '
     '"Running", "Succeeded", "Unknown"')),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostname: Web_0}\n",
     f'Pod "p" is invalid: spec.hostname: Invalid value: "Web_0": {DNS1123_LABEL}'),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{name: http}]}]}\n",
     'Pod "p" is invalid: spec.containers[0].ports[0].containerPort: Required value'),
    (("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
     "spec: {containers: [{name: c, ports: [{name: my--port, containerPort: 80}]}]}\n"),
     ('Pod "p" is invalid: spec.containers[0].ports[0].name: Invalid value: "my--port": must not contain '
     "consecutive hyphens")),
    (("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
     "spec: {containers: [{name: c, ports: [{name: a-very-long-port-name, containerPort: 80}]}]}\n"),
     ('Pod "p" is invalid: spec.containers[0].ports[0].name: Invalid value: "a-very-long-port-name": must be no '
     "more than 15 characters")),
    # Nodes.
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: nope}]}\n",
     f'Node "n" is invalid: status.addresses[0].address: Invalid value: "nope": {IP}'),
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{address: 10.0.0.1}]}\n",
     'Node "n" is invalid: status.addresses[0].type: Required value'),
    # EndpointSlices.
    ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\n",
     'EndpointSlice.discovery.k8s.io "s" is invalid: addressType: Required value'),
    ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv5\n",
     ('EndpointSlice.discovery.k8s.io "s" is invalid: addressType: Unsupported value: "IPv5": supported values: '
     '"FQDN", "IPv4", "IPv6"')),
    (("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n"
     "endpoints: [{addresses: ['fd00::1']}]\n"),
     ('EndpointSlice.discovery.k8s.io "s" is invalid: endpoints[0].addresses[0]: Invalid value: "fd00::1": must be '
     "a valid IPv4 address")),
    (("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv6\n"
     "endpoints: [{addresses: []}]\n"),
     ('EndpointSlice.discovery.k8s.io "s" is invalid: endpoints[0].addresses: Required value: must contain at '
     "least 1 address")),
    (("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: FQDN\n"
     "endpoints: [{addresses: ['Not_A.Name']}]\n"),
     (f'EndpointSlice.discovery.k8s.io "s" is invalid: endpoints[0].addresses[0]: Invalid value: "Not_A.Name": '
     f"{DNS1123_SUBDOMAIN}")),
    (("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n"
     "endpoints: [{addresses: [10.0.0.1], conditions: {ready: maybe}, hostname: A}]\n"),
     ('EndpointSlice.discovery.k8s.io "s" is invalid: [endpoints[0].hostname: Invalid value: "A": '
     f'{DNS1123_LABEL}, endpoints[0].conditions.ready: Invalid value: "maybe": must be a boolean]')),
    (("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n"
     "ports: [{name: a, port: 1, protocol: TCP}, {name: a, port: 2, protocol: TCP}, {name: b, port: 3}]\n"),
     ('EndpointSlice.discovery.k8s.io "s" is invalid: [ports[1].name: Duplicate value: "a", ports[2].protocol: '
     "Required value]")),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[message[:60] for _, message in INVALID])
def test_from_manifest_refuses_invalid_values(text, message):
    """Each bad value is refused with the API server's field path and message."""
    assert invalid_message(text) == message


def test_invalid_lists_every_cause():
    """Several problems are reported together, with their causes available one by one."""
    with pytest.raises(Invalid) as caught:
        from_manifest(doc(svc("{ports: [{port: 0, protocol: QUIC, targetPort: 80}]}")))
    assert caught.value.causes == (
        ("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        ("spec.ports[0].protocol", 'Unsupported value: "QUIC": supported values: "SCTP", "TCP", "UDP"'),
    )
    assert (caught.value.kind, caught.value.name) == ("Service", "web")


def test_endpoint_slice_with_too_many_endpoints():
    """A slice holds at most 1000 endpoints."""
    document = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}] * 1001,
    }
    with pytest.raises(Invalid) as caught:
        from_manifest(document)
    assert str(caught.value) == (
        'EndpointSlice.discovery.k8s.io "s" is invalid: endpoints: Too many: 1001: must have at most 1000 items'
    )


@pytest.mark.parametrize(
    ("text", "family"),
    [("10.0.0.1", "IPv4"), ("0.0.0.0", "IPv4"), ("fd00::1", "IPv6"), ("::ffff:10.0.0.1", "IPv6"),
     ("010.0.0.1", None), ("10.0.0", None), ("10.0.0.1.2", None), ("1.2.3.256", None), ("fe80::1%eth0", None),
     ("", None), ("fd00::g", None),
     ("١.2.3.4", None)],  # noqa: RUF001  (an Arabic-Indic digit: not an address)
)
def test_ip_family(text, family):
    """Addresses are read as ipaddress reads them, with no zone index and no leading zeros."""
    assert manifests.ip_family(text) == family


def test_service_problems_are_listed_in_order_with_their_paths():
    """Values of the expected types are read without the checker (paths are written only
    for a problem); every problem is still reported, in the order the fields are read."""
    document = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "ClusterIP", "clusterIPs": ["10.96.0.10", 5], "ipFamilies": ["IPv4", "IPv5", "IPv4"],
            "selector": {"app": "web", "bad key!": "x"},
            "ports": [
                {"port": 80}, 5,
                {"name": "Bad_Name", "protocol": "tcp", "port": 0, "targetPort": "Bad_Name", "nodePort": 30000},
                {"name": "dns", "protocol": "UDP", "port": True, "targetPort": True, "nodePort": "30001"},
                {"name": "dns", "protocol": "UDP", "port": 53}, {"name": "dns2", "protocol": "UDP", "port": 53},
            ],
        },
    }
    with pytest.raises(Invalid) as caught:
        from_manifest(document)
    assert [(path, message.split(":")[0]) for path, message in caught.value.causes] == [
        ("spec.clusterIPs[1]", "Invalid value"),
        ("spec.ipFamilies[1]", "Unsupported value"),
        ("spec.ipFamilies", "Invalid value"),
        ("spec.ipFamilies[2]", "Duplicate value"),
        ("spec.ports[0].name", "Required value"),
        ("spec.ports[0].protocol", "Required value"),
        ("spec.ports[1]", "Invalid value"),
        ("spec.ports[1].name", "Required value"),
        ("spec.ports[1].port", "Invalid value"),
        ("spec.ports[1].protocol", "Required value"),
        ("spec.ports[2].name", "Invalid value"),
        ("spec.ports[2].port", "Invalid value"),
        ("spec.ports[2].protocol", "Unsupported value"),
        ("spec.ports[2].targetPort", "Invalid value"),
        ("spec.ports[2].nodePort", "Forbidden"),
        ("spec.ports[3].port", "Invalid value"),
        ("spec.ports[3].targetPort", "Invalid value"),
        ("spec.ports[3].nodePort", "Invalid value"),
        ("spec.ports[4].name", "Duplicate value"),
        ("spec.ports[5]", "Duplicate value"),
        ("spec.selector", "Invalid value"),
    ]
    assert caught.value.causes[15] == ("spec.ports[3].port", "Invalid value: true: must be an integer")
    assert caught.value.causes[19] == ("spec.ports[5]", 'Duplicate value: {"port": 53, "protocol": "UDP"}')


_TREES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: (st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=3)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=3).map(MappingProxyType)),
    max_leaves=15,
)


def _plain_copy(value: Any) -> Any:
    """What copy_tree is: mappings made dicts, lists and tuples lists, scalars as they are."""
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


@given(_TREES)
def test_copy_tree_copies_every_container(tree: Any) -> None:
    copied = copy_tree(tree)
    assert copied == _plain_copy(tree)
    assert [type(c) for c in _containers(copied)] == [type(c) for c in _containers(_plain_copy(tree))]
    assert not {id(c) for c in _containers(copied)} & {id(c) for c in _containers(tree)}


def _containers(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [value, *(c for v in value.values() for c in _containers(v))]
    if isinstance(value, (list, tuple)):
        return [value, *(c for v in value for c in _containers(v))]
    return []
