"""Cluster generator for the benchmark: kdns manifests, the equivalent Knot zone files and
a dnsperf query file, all from one seeded model, so both servers answer the same names.

    python bench/gen.py --out /tmp/cluster                # the benchmark cluster
    python bench/gen.py --out /tmp/scale --preset scale   # 10,000 services, 100,000 pods

Writes, under --out:

* manifests/<namespace>.yaml   Namespaces, Services and Pods, as `kubectl apply` takes
                               them; kdns derives the EndpointSlices itself;
* zones/cluster.local.zone, zones/in-addr.arpa.zone, zones/ip6.arpa.zone
                               the same records as RFC 1035 zone files for Knot;
* queries.txt                  dnsperf's input: `name type` per line, in the mix below;
* queries-storm.txt            a search-path storm (`storm_mix`): half of that mix, half
                               outside names with a pod's search suffixes appended;
* upstream/ext.example.zone, queries-forward.txt
                               an outside zone (for kdns's forwarder and cache) and
                               queries for its names;
* model.json                   the counts, the mix and a sample of expected answers.

The records follow what kdns answers (docs/dns-rules.md, kdns/authority/answer.py): A per cluster IP; SRV for named ports on
`_port._proto.<svc>` and on the bare service name (priority 0, weight 100 // n); for
headless services one A per ready pod on the service name, `<hostname>.<svc>` per pod
(A, and SRV for its named ports), SRV targets per pod; PTR for cluster IPs and endpoint
addresses; pod A records (`a-b-c-d.<ns>.pod`, pods verified); SOA and NS at each apex,
`ns.dns.<zone>` and the schema TXT. Everything else is NXDOMAIN or NODATA in both.

Deterministic: the same arguments and --seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ZONE = "cluster.local."
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
TTL = 5  # kdns's default record TTL (--ttl)
SCHEMA_TTL = 28800
SOA_TIMERS = (7200, 1800, 86400)  # refresh, retry, expire: kdns/authority/records.py
SERVER_ADDRESS = "127.0.0.1"  # ns.dns.<zone> answers the address kdns listens on
SERVICE_IP_BASE = int(ipaddress.ip_address("10.96.0.100"))  # inside kdns's default 10.96.0.0/12
FORWARD_ZONE = "ext.example."  # outside the cluster: answered by kdns's forwarder / cache
FORWARD_TTL = 3600

# The realistic mix: (category, share of queries, what it asks).
MIX = (
    ("service-A", 0.48, "A of a ClusterIP service (1 record)"),
    ("service-AAAA", 0.05, "AAAA of an IPv4-only service, as glibc asks beside A (NODATA)"),
    ("service-SRV", 0.10, "SRV _port._proto of a ClusterIP service (1 SRV + 1 A additional)"),
    ("headless-A", 0.10, "A of a headless service (one A per pod: 10 records)"),
    ("headless-SRV", 0.05, "SRV _port._proto of a headless service (10 SRV + 10 A additional)"),
    ("pod-A", 0.10, "A of a per-pod name <hostname>.<svc>.<ns>.svc"),
    ("PTR", 0.07, "PTR of a cluster IP or a pod IP"),
    ("NXDOMAIN", 0.05, "names that do not exist (unknown service, namespace, port, pod, IP, search-path expansion)"),
)


@dataclass(frozen=True)
class Spec:
    namespaces: int = 10
    services: int = 1000  # ClusterIP services
    service_pods: int = 0  # pods behind each ClusterIP service
    headless: int = 100
    headless_pods: int = 10
    queries: int = 50_000
    forward_names: int = 1000
    seed: int = 1


PRESETS = {
    # the benchmark cluster of the issue
    "bench": Spec(),
    # the scale target: 10,000 services and 100,000 pods (9,000 ClusterIP services with 10
    # pods each and 1,000 headless with 10 each), in 100 namespaces
    "scale": Spec(namespaces=100, services=9000, service_pods=10, headless=1000, headless_pods=10, queries=10_000),
}


# ---------------------------------------------------------------------------- the model


@dataclass
class Service:
    name: str
    namespace: str
    headless: bool
    cluster_ip: str | None
    ports: list[tuple[str, int, str]]  # (name, port, protocol)
    pods: list[Pod] = field(default_factory=list)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"


@dataclass
class Pod:
    name: str
    namespace: str
    ip: str
    hostname: str | None  # spec.hostname (with spec.subdomain = the headless service)
    service: str

    @property
    def endpoint_name(self) -> str:
        """The endpoint's DNS label: the hostname, else the dashed address."""
        return self.hostname or self.ip.replace(".", "-")


@dataclass
class Cluster:
    spec: Spec
    namespaces: list[str]
    services: list[Service]

    @property
    def pods(self) -> list[Pod]:
        return [pod for service in self.services for pod in service.pods]


def _width(count: int) -> int:
    return max(2, len(str(max(count - 1, 0))))


def build(spec: Spec) -> Cluster:
    """The cluster model: names, addresses and ports, deterministic for a spec."""
    nsw = _width(spec.namespaces)
    namespaces = [f"ns-{i:0{nsw}d}" for i in range(spec.namespaces)]
    total_pods = spec.services * spec.service_pods + spec.headless * spec.headless_pods
    # 10.244.0.0/16 holds 65,536 addresses; larger clusters take 10.128.0.0/10.
    pod_base = int(ipaddress.ip_address("10.244.0.10" if total_pods < 65_000 else "10.128.0.10"))
    next_pod = 0
    services: list[Service] = []
    sw = _width(spec.services)
    for k in range(spec.services):
        ports = [("http", 80, "TCP")]
        if k % 3 == 0:
            ports.append(("metrics", 9090, "TCP"))
        if k % 10 == 0:
            ports.append(("dns", 53, "UDP"))
        service = Service(
            name=f"svc-{k:0{sw}d}",
            namespace=namespaces[k % spec.namespaces],
            headless=False,
            cluster_ip=str(ipaddress.ip_address(SERVICE_IP_BASE + k)),
            ports=ports,
        )
        for i in range(spec.service_pods):
            ip = str(ipaddress.ip_address(pod_base + next_pod))
            next_pod += 1
            service.pods.append(Pod(f"{service.name}-{i}", service.namespace, ip, None, service.name))
        services.append(service)
    hw = _width(spec.headless)
    for h in range(spec.headless):
        service = Service(
            name=f"db-{h:0{hw}d}",
            namespace=namespaces[h % spec.namespaces],
            headless=True,
            cluster_ip=None,
            ports=[("postgres", 5432, "TCP")],
        )
        for i in range(spec.headless_pods):
            ip = str(ipaddress.ip_address(pod_base + next_pod))
            next_pod += 1
            name = f"{service.name}-{i}"  # StatefulSet style: hostname = pod name
            service.pods.append(Pod(name, service.namespace, ip, name, service.name))
        services.append(service)
    return Cluster(spec, namespaces, services)


# ---------------------------------------------------------------------------- records


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


class Records:
    """name -> type -> list of rdata text, plus the zone each name belongs to."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, list[str]]] = {}

    def add(self, name: str, rtype: str, rdata: str) -> None:
        rdatas = self.data.setdefault(name.lower(), {}).setdefault(rtype, [])
        if rdata not in rdatas:
            rdatas.append(rdata)

    def exists(self, name: str) -> bool:
        """A name with data or with descendants (an empty non-terminal)."""
        return name.lower() in self._all_names()

    def _all_names(self) -> set[str]:
        cache = getattr(self, "_names", None)
        if cache is None:
            cache = set()
            for name in self.data:
                labels = name.rstrip(".").split(".")
                for i in range(len(labels)):
                    cache.add(".".join(labels[i:]) + ".")
            self._names = cache
        return cache


def soa_rdata(serial: int = 1) -> str:
    refresh, retry, expire = SOA_TIMERS
    return f"ns.dns.{ZONE} hostmaster.{ZONE} {serial} {refresh} {retry} {expire} {TTL}"


def records(cluster: Cluster) -> Records:
    """Every record kdns answers for this cluster (answer section contents)."""
    r = Records()
    for zone in (ZONE, *REVERSE_ZONES):
        r.add(zone, "SOA", soa_rdata())
        r.add(zone, "NS", f"ns.dns.{ZONE}")
    r.add(f"ns.dns.{ZONE}", "A", SERVER_ADDRESS)
    r.add(f"dns-version.{ZONE}", "TXT", '"1.1.0"')
    for service in cluster.services:
        fqdn = service.fqdn
        named = [p for p in service.ports if p[0]]
        if not service.headless:
            assert service.cluster_ip
            r.add(fqdn, "A", service.cluster_ip)
            r.add(reverse_name(service.cluster_ip), "PTR", fqdn)
            for pname, port, proto in named:
                r.add(f"_{pname}._{proto.lower()}.{fqdn}", "SRV", f"0 100 {port} {fqdn}")
            for _, port, _ in named:
                r.add(fqdn, "SRV", f"0 {max(1, 100 // len(named))} {port} {fqdn}")
        else:
            for pod in service.pods:
                r.add(fqdn, "A", pod.ip)
            for pname, port, proto in named:
                targets = [f"{pod.endpoint_name}.{fqdn}" for pod in service.pods]
                for target in targets:
                    r.add(f"_{pname}._{proto.lower()}.{fqdn}", "SRV", f"0 {max(1, 100 // len(targets))} {port} {target}")
            bare = [(port, f"{pod.endpoint_name}.{fqdn}") for pod in service.pods for _, port, _ in named]
            for port, target in bare:
                r.add(fqdn, "SRV", f"0 {max(1, 100 // len(bare))} {port} {target}")
        for pod in service.pods:
            endpoint = f"{pod.endpoint_name}.{fqdn}"
            r.add(endpoint, "A", pod.ip)
            for _, port, _ in named:
                r.add(endpoint, "SRV", f"0 {max(1, 100 // len(named))} {port} {endpoint}")
            r.add(reverse_name(pod.ip), "PTR", endpoint)
    for pod in cluster.pods:
        r.add(f"{pod.ip.replace('.', '-')}.{pod.namespace}.pod.{ZONE}", "A", pod.ip)
    return r


def zone_of(name: str) -> str | None:
    for zone in (ZONE, *REVERSE_ZONES):
        if name == zone or name.endswith("." + zone):
            return zone
    return None


def expected(r: Records, name: str, qtype: str) -> tuple[str, list[str]]:
    """(rcode, sorted answer rdata) that a conforming server gives; no CNAMEs here."""
    name = name.lower()
    if not name.endswith("."):
        name += "."
    if zone_of(name) is None:
        return "REFUSED", []
    found = r.data.get(name, {}).get(qtype)
    if found:
        return "NOERROR", sorted(found)
    if r.exists(name):
        return "NOERROR", []
    return "NXDOMAIN", []


# ---------------------------------------------------------------------------- writers


def write_manifests(cluster: Cluster, directory: Path) -> list[Path]:
    """One YAML file per namespace: the Namespace, its Services, its Pods."""
    directory.mkdir(parents=True, exist_ok=True)
    by_ns: dict[str, list[str]] = {ns: [] for ns in cluster.namespaces}
    for ns in cluster.namespaces:
        by_ns[ns].append(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
    for service in cluster.services:
        ports = "".join(
            f"    - name: {pname}\n      protocol: {proto}\n      port: {port}\n      targetPort: {port}\n"
            for pname, port, proto in service.ports
        )
        ip = "  clusterIP: None\n" if service.headless else (
            f"  clusterIP: {service.cluster_ip}\n  clusterIPs: [{service.cluster_ip}]\n"
            "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4]\n"
        )
        by_ns[service.namespace].append(
            "apiVersion: v1\nkind: Service\nmetadata:\n"
            f"  name: {service.name}\n  namespace: {service.namespace}\n"
            f"  labels:\n    app: {service.name}\n"
            "spec:\n  type: ClusterIP\n" + ip
            + f"  selector:\n    app: {service.name}\n  ports:\n" + ports
        )
        for pod in service.pods:
            host = f"  hostname: {pod.hostname}\n  subdomain: {service.name}\n" if pod.hostname else ""
            by_ns[pod.namespace].append(
                "apiVersion: v1\nkind: Pod\nmetadata:\n"
                f"  name: {pod.name}\n  namespace: {pod.namespace}\n  labels:\n    app: {service.name}\n"
                "spec:\n" + host
                + "  containers:\n    - name: main\n      image: registry.example/app:1.0\n"
                "status:\n  phase: Running\n"
                f"  podIP: {pod.ip}\n  podIPs:\n    - ip: {pod.ip}\n"
                '  conditions:\n    - type: Ready\n      status: "True"\n'
            )
    paths = []
    for ns, docs in by_ns.items():
        path = directory / f"{ns}.yaml"
        path.write_text("---\n".join(docs))
        paths.append(path)
    return paths


def write_zones(r: Records, directory: Path) -> dict[str, Path]:
    """One zone file per served zone, absolute names, TTL 5 (TXT schema 28800)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {zone: [f"$TTL {TTL}"] for zone in (ZONE, *REVERSE_ZONES)}
    # SOA first, then the rest in a stable order.
    for zone, zone_lines in lines.items():
        zone_lines.append(f"{zone} {TTL} IN SOA {r.data[zone]['SOA'][0]}")
    for name in sorted(r.data):
        owner_zone = zone_of(name)
        assert owner_zone is not None, name
        for rtype, rdatas in r.data[name].items():
            if rtype == "SOA":
                continue
            ttl = SCHEMA_TTL if rtype == "TXT" and name.startswith("dns-version.") else TTL
            for rdata in rdatas:
                lines[owner_zone].append(f"{name} {ttl} IN {rtype} {rdata}")
    paths = {}
    for zone, zone_lines in lines.items():
        path = directory / f"{zone}zone"  # "cluster.local." + "zone"
        path.write_text("\n".join(zone_lines) + "\n")
        paths[zone] = path
    return paths


def query_mix(cluster: Cluster, r: Records, count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(category, name, type) tuples, shuffled; category shares as in MIX, exactly."""
    plain = [s for s in cluster.services if not s.headless]
    headless = [s for s in cluster.services if s.headless and s.pods]
    pods = [p for s in headless for p in s.pods]
    ptr_ips = [s.cluster_ip for s in plain if s.cluster_ip] + [p.ip for p in cluster.pods]
    namespaces = cluster.namespaces

    def nx() -> tuple[str, str]:
        for _ in range(100):  # bounded: draw until the name really does not exist
            kind = rng.randrange(6)
            ns = rng.choice(namespaces)
            if kind == 0:
                name, qtype = f"svc-x{rng.randrange(10**6)}.{ns}.svc.{ZONE}", "A"
            elif kind == 1:
                name, qtype = f"{rng.choice(plain).name}.ns-missing-{rng.randrange(100)}.svc.{ZONE}", "A"
            elif kind == 2:
                s = rng.choice(plain)
                name, qtype = f"_https._tcp.{s.fqdn}", "SRV"
            elif kind == 3:
                s = rng.choice(headless) if headless else rng.choice(plain)
                name, qtype = f"{s.name}-{rng.randrange(50, 99)}.{s.fqdn}", "A"
            elif kind == 4:
                ip = ipaddress.ip_address(int(ipaddress.ip_address("10.200.0.0")) + rng.randrange(2**16))
                name, qtype = reverse_name(str(ip)), "PTR"
            else:  # a resolver's search path: ndots:5 appends <ns>.svc.<zone> to a full name
                s = rng.choice(plain)
                name, qtype = f"{s.fqdn}{s.namespace}.svc.{ZONE}", "A"
            if not r.exists(name):
                return name, qtype
        raise RuntimeError("could not draw a non-existent name")

    def draw(category: str) -> tuple[str, str]:
        if category == "service-A":
            return rng.choice(plain).fqdn, "A"
        if category == "service-AAAA":
            return rng.choice(plain).fqdn, "AAAA"
        if category == "service-SRV":
            service = rng.choice(plain)
            pname, _, proto = rng.choice(service.ports)
            return f"_{pname}._{proto.lower()}.{service.fqdn}", "SRV"
        if category == "headless-A":
            return rng.choice(headless).fqdn, "A"
        if category == "headless-SRV":
            service = rng.choice(headless)
            pname, _, proto = service.ports[0]
            return f"_{pname}._{proto.lower()}.{service.fqdn}", "SRV"
        if category == "pod-A":
            pod = rng.choice(pods)
            return f"{pod.endpoint_name}.{pod.service}.{pod.namespace}.svc.{ZONE}", "A"
        if category == "PTR":
            return reverse_name(rng.choice(ptr_ips)), "PTR"
        return nx()

    out: list[tuple[str, str, str]] = []
    remaining = count
    for i, (category, share, _) in enumerate(MIX):
        n = remaining if i == len(MIX) - 1 else round(count * share)
        remaining -= n
        if not headless and (category.startswith("headless") or category == "pod-A"):
            continue
        for _ in range(n):
            name, qtype = draw(category)
            out.append((category, name, qtype))
    rng.shuffle(out)
    return out


# Outside names a pod's software looks up (registries, package mirrors, cloud APIs),
# a few hundred of them, spelt as written: with fewer dots than ndots:5, the resolver
# tries every search suffix first.
OUTSIDE_DOMAINS = ("example.com", "example.net", "example.org", "registry.example", "mirror.example")
OUTSIDE_HOSTS = ("www", "api", "cdn", "auth", "login", "static", "images", "updates", "s3", "storage",
                 "queue", "metrics", "logs", "sso", "pypi", "npm", "git", "ghcr", "quay", "docker")


def storm_mix(cluster: Cluster, r: Records, count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """A search-path storm: half the bench mix's cluster questions, half outside names with
    a pod's search suffixes appended, as a resolver with ndots:5 asks them (A and AAAA each,
    `<name>.<ns>.svc.<zone>`, `<name>.svc.<zone>`, `<name>.<zone>`): NXDOMAIN, every one.
    (category, name, type) tuples, shuffled."""
    outside = [f"{host}{i}.{domain}" if i else f"{host}.{domain}"
               for domain in OUTSIDE_DOMAINS for host in OUTSIDE_HOSTS for i in range(5)]
    half = count // 2
    out = [("cluster", name, qtype) for _, name, qtype in query_mix(cluster, r, count - half, rng)]
    while len(out) < count:
        name, namespace = rng.choice(outside), rng.choice(cluster.namespaces)
        for suffix in (f"{namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE):
            for qtype in ("A", "AAAA"):
                if len(out) < count and not r.exists(f"{name}.{suffix}"):
                    out.append(("search-path", f"{name}.{suffix}", qtype))
    rng.shuffle(out)
    return out


def write_forward(spec: Spec, directory: Path) -> tuple[Path, Path]:
    """An outside zone for the upstream (Knot) and the queries that kdns forwards/caches."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"$TTL {FORWARD_TTL}",
        f"{FORWARD_ZONE} IN SOA ns.{FORWARD_ZONE} hostmaster.{FORWARD_ZONE} 1 7200 1800 86400 {FORWARD_TTL}",
        f"{FORWARD_ZONE} IN NS ns.{FORWARD_ZONE}",
        f"ns.{FORWARD_ZONE} IN A 192.0.2.1",
    ]
    base = int(ipaddress.ip_address("198.18.0.1"))  # RFC 2544 benchmarking range
    names = []
    for i in range(spec.forward_names):
        name = f"host-{i:04d}.{FORWARD_ZONE}"
        names.append(name)
        lines.append(f"{name} IN A {ipaddress.ip_address(base + i)}")
    zone_path = directory / f"{FORWARD_ZONE}zone"
    zone_path.write_text("\n".join(lines) + "\n")
    query_path = directory.parent / "queries-forward.txt"
    query_path.write_text("".join(f"{name} A\n" for name in names))
    return zone_path, query_path


def generate(out: Path, spec: Spec, *, zones: bool = True) -> dict:
    """Write everything for `spec` under `out`; returns the model summary (model.json)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    cluster = build(spec)
    manifests = write_manifests(cluster, out / "manifests")
    r = records(cluster)
    summary: dict = {
        "spec": asdict(spec),
        "namespaces": len(cluster.namespaces),
        "services_clusterip": spec.services,
        "services_headless": spec.headless,
        "pods": len(cluster.pods),
        "records": sum(len(v) for types in r.data.values() for v in types.values()),
        "mix": [{"category": c, "share": s, "what": w} for c, s, w in MIX],
        "manifests": [str(p) for p in manifests],
    }
    if zones:
        summary["zones"] = {zone: str(path) for zone, path in write_zones(r, out / "zones").items()}
    mix = query_mix(cluster, r, spec.queries, rng)
    (out / "queries.txt").write_text("".join(f"{name} {qtype}\n" for _, name, qtype in mix))
    summary["queries"] = str(out / "queries.txt")
    summary["query_count"] = len(mix)
    # Its own generator, so that queries.txt stays what it was for a seed.
    storm = storm_mix(cluster, r, spec.queries, random.Random(f"storm-{spec.seed}"))
    (out / "queries-storm.txt").write_text("".join(f"{name} {qtype}\n" for _, name, qtype in storm))
    summary["storm_queries"] = str(out / "queries-storm.txt")
    # A sample for the sanity check: the first queries of each category, with the answer.
    sample: list[dict] = []
    per_category: dict[str, int] = {}
    for category, name, qtype in mix:
        if per_category.get(category, 0) >= 12:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        rcode, answer = expected(r, name, qtype)
        sample.append({"category": category, "name": name, "type": qtype, "rcode": rcode, "answer": answer})
    # and the structural names: apex, schema, namespaces, a bare-name SRV, an endpoint SRV
    headless = next((s for s in cluster.services if s.headless and s.pods), None)
    plain = next(s for s in cluster.services if not s.headless)
    extra = [
        (ZONE, "SOA"), (ZONE, "NS"), (f"ns.dns.{ZONE}", "A"), (f"dns-version.{ZONE}", "TXT"),
        (f"svc.{ZONE}", "A"), (f"{plain.namespace}.svc.{ZONE}", "A"), (f"nope.{ZONE}", "A"),
        (plain.fqdn, "SRV"), (plain.fqdn, "TXT"), (f"_tcp.{plain.fqdn}", "SRV"),
        (reverse_name(plain.cluster_ip or "10.96.0.100"), "PTR"), ("in-addr.arpa.", "SOA"),
        ("1.2.3.4.in-addr.arpa.", "PTR"),
    ]
    if headless:
        pod = headless.pods[0]
        extra += [
            (headless.fqdn, "SRV"), (f"{pod.endpoint_name}.{headless.fqdn}", "SRV"),
            (f"{pod.ip.replace('.', '-')}.{pod.namespace}.pod.{ZONE}", "A"), (reverse_name(pod.ip), "PTR"),
        ]
    for name, qtype in extra:
        rcode, answer = expected(r, name, qtype)
        sample.append({"category": "structure", "name": name, "type": qtype, "rcode": rcode, "answer": answer})
    summary["sample"] = sample
    forward_zone, forward_queries = write_forward(spec, out / "upstream")
    summary["forward"] = {"zone": FORWARD_ZONE, "file": str(forward_zone), "queries": str(forward_queries)}
    (out / "model.json").write_text(json.dumps(_relative(summary, out), indent=1) + "\n")
    return summary


def _relative(value, base: Path):
    """The summary with paths under `base` written relative to it (so the file is the
    same wherever it was generated)."""
    if isinstance(value, dict):
        return {k: _relative(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, base) for v in value]
    if isinstance(value, str) and value.startswith(str(base) + os.sep):
        return os.path.relpath(value, base)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="bench")
    parser.add_argument("--seed", type=int, help="random seed (default 1)")
    parser.add_argument("--queries", type=int, help="lines in queries.txt")
    parser.add_argument("--no-zones", action="store_true", help="manifests and queries only")
    args = parser.parse_args(argv)
    spec = PRESETS[args.preset]
    changes = {k: v for k, v in (("seed", args.seed), ("queries", args.queries)) if v is not None}
    if changes:
        spec = Spec(**{**asdict(spec), **changes})
    summary = generate(args.out, spec, zones=not args.no_zones)
    print(
        f"{summary['namespaces']} namespaces, {summary['services_clusterip']} ClusterIP + "
        f"{summary['services_headless']} headless services, {summary['pods']} pods, "
        f"{summary['records']} records, {summary['query_count']} queries -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
