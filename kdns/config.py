"""Settings: every knob of kdns, validated once, frozen.

`Settings` is built by `cli.py` from flags and `KDNS_*` environment variables and handed
down; nothing else reads the environment. Building one has no side effects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdns.errors import KdnsError
from kdns.hostport import join_host_port, split_host_port

if TYPE_CHECKING:
    from argparse import Namespace

PODS_MODES = ("disabled", "insecure", "verified")
QUERY_LOG_FORMATS = ("coredns", "json")
# RFC 5001 allows 65535 bytes; an identifier a person reads in dig's output is short.
MAX_NSID = 128
MAX_TTL = 3600  # CoreDNS's bound for `ttl`
# Each worker holds a whole copy of the registry's DNS tables: a bound on the memory a
# typo (--workers 1000) can ask for.
MAX_WORKERS = 64


class ConfigError(KdnsError):
    """The configuration is invalid."""


def default_manifests() -> tuple[Path, ...]:
    """The example cluster: `zones/` in a source checkout, or the copy inside the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "zones", here.parent / "zones"):
        if candidate.is_dir():
            return (candidate,)
    return ()


def flag_or_env(args: Namespace, environ: Mapping[str, str], name: str) -> tuple[Any, str]:
    """The flag `name`'s value if it was given, else its `KDNS_*` environment twin's (None
    if neither), with where it came from for messages: `dns_port` is `--dns-port` or
    `KDNS_DNS_PORT`."""
    flag = getattr(args, name)
    if flag is not None:
        return flag, "--" + name.replace("_", "-")
    env_name = "KDNS_" + name.upper()
    return environ.get(env_name), env_name


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where the registry is kept between runs: $XDG_STATE_HOME/kdns, else ~/.local/state/kdns."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "kdns"


def parse_networks(values: Iterable[str], what: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs (comma- or space-separated, repeatable) -> networks; a bare address is a /32 or /128."""
    networks = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ConfigError(f"{what} {part!r}: {exc}") from None
    return tuple(networks)


def normalize_zone(zone: str) -> str:
    """`Cluster.Local` -> `cluster.local.`: lower case, absolute, validated."""
    name = zone.strip().lower().rstrip(".")
    if not name:
        raise ConfigError(f"zone {zone!r}: must not be empty")
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            raise ConfigError(f"zone {zone!r}: label {label!r} must be 1-63 characters")
    if len(name) > 253:
        raise ConfigError(f"zone {zone!r}: longer than 253 characters")
    return name + "."


def parse_store(text: str, *, tls: bool) -> tuple[str, ...]:
    """`--store`: `sqlite` (the embedded store) -> (); `etcd://HOST:PORT[,HOST:PORT...]` ->
    the members' client URLs (https when `tls`, i.e. a CA or client certificate is given)."""
    value = text.strip()
    if value.lower() in ("", "sqlite"):
        return ()
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() != "etcd":
        raise ConfigError(f"store {text!r}: expected sqlite or etcd://HOST:PORT[,HOST:PORT...]")
    urls = []
    for member in rest.split(","):
        try:
            host, port_text = split_host_port(member.strip())
        except ValueError:
            host, port_text = "", None
        if not host or not port_text or not port_text.isdigit() or not (1 <= int(port_text) <= 65535):
            raise ConfigError(f"store {text!r}: member {member.strip()!r} is not HOST:PORT")
        urls.append(f"{'https' if tls else 'http'}://{join_host_port(host, int(port_text))}")
    return tuple(urls)


def parse_port_range(text: str) -> tuple[int, int]:
    """`30000-32767` -> (30000, 32767), as kube-apiserver's --service-node-port-range."""
    try:
        low_text, high_text = text.split("-", 1)
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ConfigError(f"node port range {text!r}: expected LOW-HIGH, e.g. 30000-32767") from None
    if not (1 <= low <= high <= 65535):
        raise ConfigError(f"node port range {text!r}: need 1 <= LOW <= HIGH <= 65535")
    return low, high


def parse_service_cidrs(
    text: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.96.0.0/12,fd00:10:96::/112` -> networks; at most one per address family."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ConfigError(f"service CIDR {part!r}: {exc}") from None
    if not networks:
        raise ConfigError("service CIDR: at least one network is required")
    families = [n.version for n in networks]
    if len(set(families)) != len(families):
        raise ConfigError(f"service CIDR {text!r}: at most one IPv4 and one IPv6 network")
    for network in networks:
        if network.num_addresses < 4:
            raise ConfigError(f"service CIDR {network}: too small to allocate from")
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Settings:
    """What kdns serves and how. Field names match the CLI flags (`--dns-port` -> dns_port)."""

    zone: str = "cluster.local."
    ttl: int = 5
    pods: str = "verified"
    dns_address: str = "127.0.0.1"
    # 1053, not 53: `kdns serve` must start for a user without root; containers set 53.
    dns_port: int = 1053
    manifests: tuple[Path, ...] = field(default_factory=default_manifests)
    service_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("10.96.0.0/12"),
        ipaddress.ip_network("fd00:10:96::/112"),
    )
    node_port_range: tuple[int, int] = (30000, 32767)
    # () means forwarding is off: names outside the served zones are REFUSED. The CLI turns
    # its default, `auto`, into the host's resolv.conf nameservers (kdns itself excluded).
    upstreams: tuple[str, ...] = ()
    forward_timeout: float = 1.0  # one try at one upstream
    forward_deadline: float = 2.0  # all tries for one question: SERVFAIL after it
    cache_size: int = 10_000  # entries; 0 turns the cache off
    cache_max_ttl: int = 3600
    cache_max_negative_ttl: int = 300
    cache_stale_window: int = 86_400  # RFC 8767 serve-stale, when every upstream fails
    # Static RFC 1035 zones (`*.zone`), served authoritatively; None: no static zones.
    zones_dir: Path | None = field(default_factory=lambda: next(iter(default_manifests()), None))
    # Clients that may use kdns as a resolver for names it is not authoritative for.
    allow_recursion: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
        ipaddress.ip_network(n)
        for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    )
    autopath: bool = False

    # The HTTP API (Kubernetes-shaped). 8080 is where kubectl looks when it has no
    # kubeconfig at all, so a bare `kubectl get svc` on the same host reaches kdns.
    api_address: str = "127.0.0.1"
    api_port: int = 8080
    api_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The registry's SQLite file lives here. None keeps the registry in memory only: the
    # CLI's --ephemeral; its default is default_data_dir().
    data_dir: Path | None = None
    # The service proxy (`--proxy`): ClusterIPs and NodePorts that route, in user space.
    proxy: bool = False
    # The interface ClusterIPs are added to (needs CAP_NET_ADMIN); None: they route already.
    proxy_interface: str | None = None
    # This node's address, where NodePorts listen; None: no NodePorts.
    node_address: str | None = None
    proxy_max_connections: int = 1000  # open TCP connections plus UDP flows, per service
    # Processes answering DNS on the same port (SO_REUSEPORT): this one, which owns the
    # registry, and workers - 1 that serve a copy of it (kdns/replication.py runs them,
    # each a kdns/worker.py process).
    workers: int = 1
    # Changes kept for watches to resume from and continue tokens to page through (the
    # API server's watch window and etcd's compaction in one): older versions get 410.
    event_log_size: int = 10_000
    # --follow: the kubeconfig of a cluster whose API kdns follows instead of owning a
    # registry (kdns/follow/), and the context in it (None: its current-context).
    follow: Path | None = None
    follow_context: str | None = None
    # The registry on etcd (`--store etcd://HOST:PORT,...`): its members' client URLs;
    # () keeps the embedded store (SQLite under data_dir). See kdns/etcd/store.py.
    etcd_endpoints: tuple[str, ...] = ()
    etcd_prefix: str = "/kdns"
    etcd_cafile: Path | None = None  # https to the members, verified with this CA
    etcd_certfile: Path | None = None  # the client certificate etcd asks for, with etcd_keyfile
    etcd_keyfile: Path | None = None
    # The controller lease (readiness prober): kube-controller-manager's default, 15 s.
    leader_elect_lease_duration: float = 15.0
    # Sent to clients that ask for it (RFC 5001), so a person knows which replica
    # answered; "" sends none.
    nsid: str = ""
    # The query log (`--log-queries`): None (off), "coredns" or "json"; one answer in
    # round(1 / log_queries_sample) is logged.
    log_queries: str | None = None
    log_queries_sample: float = 1.0


    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", normalize_zone(self.zone))
        if not (0 <= self.ttl <= MAX_TTL):
            raise ConfigError(f"ttl {self.ttl}: must be between 0 and {MAX_TTL}")
        if self.pods not in PODS_MODES:
            raise ConfigError(f"pods {self.pods!r}: must be one of {', '.join(PODS_MODES)}")
        if not (0 <= self.dns_port <= 65535):
            raise ConfigError(f"dns port {self.dns_port}: must be between 0 and 65535")
        try:
            ipaddress.ip_address(self.dns_address)
        except ValueError:
            raise ConfigError(f"dns address {self.dns_address!r}: not an IP address") from None
        if not (1 <= self.workers <= MAX_WORKERS):
            raise ConfigError(f"workers {self.workers}: must be between 1 and {MAX_WORKERS}")
        if self.event_log_size < 1:
            raise ConfigError(f"event log size {self.event_log_size}: must be at least 1")
        if self.follow_context is not None and self.follow is None:
            raise ConfigError("--follow-context needs --follow")
        if self.follow is not None and self.workers > 1:
            raise ConfigError("--follow serves from one process: --workers is not supported with it")
        if self.follow is not None and self.proxy:
            raise ConfigError("--follow runs no service proxy: --proxy is not supported with it")
        if self.follow is not None and self.etcd_endpoints:
            raise ConfigError("--follow serves the followed cluster's objects, kept in memory only: --store is not supported with it")
        if not (0 <= self.api_port <= 65535):
            raise ConfigError(f"api port {self.api_port}: must be between 0 and 65535")
        try:
            api_ip = ipaddress.ip_address(self.api_address)
        except ValueError:
            raise ConfigError(f"api address {self.api_address!r}: not an IP address") from None
        if not api_ip.is_loopback and not self.api_token:
            raise ConfigError(
                f"api address {self.api_address}: binding the API beyond loopback requires --api-token"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        for name in ("cache_size", "cache_max_ttl", "cache_max_negative_ttl", "cache_stale_window"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', ' ')} {getattr(self, name)}: must not be negative")
        if not (0 < self.forward_timeout <= self.forward_deadline):
            raise ConfigError("forward timeout must be positive and at most the forward deadline")
        low, high = self.node_port_range
        if not (1 <= low <= high <= 65535):
            raise ConfigError(f"node port range {low}-{high}: need 1 <= LOW <= HIGH <= 65535")
        if self.proxy_max_connections < 1:
            raise ConfigError(f"proxy max connections {self.proxy_max_connections}: must be at least 1")
        if len(self.nsid.encode("utf-8")) > MAX_NSID:
            raise ConfigError(f"nsid {self.nsid!r}: at most {MAX_NSID} bytes")
        if self.log_queries is not None and self.log_queries not in QUERY_LOG_FORMATS:
            raise ConfigError(f"log queries {self.log_queries!r}: must be one of {', '.join(QUERY_LOG_FORMATS)}")
        if not 0 < self.log_queries_sample <= 1:
            raise ConfigError(f"log queries sample {self.log_queries_sample}: must be above 0 and at most 1")
        if self.node_address is not None:
            try:
                ipaddress.ip_address(self.node_address)
            except ValueError:
                raise ConfigError(f"node address {self.node_address!r}: not an IP address") from None

        if not self.etcd_prefix.startswith("/") or self.etcd_prefix.rstrip("/") == "":
            raise ConfigError(f"etcd prefix {self.etcd_prefix!r}: must be an absolute key path such as /kdns")
        if (self.etcd_certfile is None) != (self.etcd_keyfile is None):
            raise ConfigError("--etcd-certfile and --etcd-keyfile go together")
        if not (1 <= self.leader_elect_lease_duration <= 3600):
            raise ConfigError(
                f"leader elect lease duration {self.leader_elect_lease_duration:g}: must be between 1 and 3600 seconds"
            )

    @property
    def reverse_zones(self) -> tuple[str, ...]:
        """The reverse zones kdns is authoritative for, as CoreDNS is usually configured."""
        return ("in-addr.arpa.", "ip6.arpa.")

    @property
    def soa_ttl(self) -> int:
        """The SOA record's own TTL: min(ttl, 300), as CoreDNS."""
        return min(self.ttl, 300)
