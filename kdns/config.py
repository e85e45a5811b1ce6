"""Settings: every knob of kdns, validated once, frozen; and where each value comes from.

`Settings` is built by `cli.py` from flags, `KDNS_*` environment variables and a
configuration file, and handed down; nothing else reads the environment. Building one has
no side effects.

An `Option` is declared once, by its flag; its environment variable (`--dns-port`:
`KDNS_DNS_PORT`) and its configuration-file key (`dns-port`) follow from the flag, so a
new flag has both without another line. `gather` collects what was given for each option,
flag over variable over file, as a `Given`: the value and its source (`--ttl`, `KDNS_TTL`,
`kdns.toml:3: ttl`), which every error about that value names.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kdns.errors import KdnsError
from kdns.hostport import join_host_port, split_host_port

PODS_MODES = ("disabled", "insecure", "verified")
QUERY_LOG_FORMATS = ("coredns", "json")
# RFC 5001 allows 65535 bytes; an identifier a person reads in dig's output is short.
MAX_NSID = 128
MAX_TTL = 3600  # CoreDNS's bound for `ttl`
# A new API connection waits at most one round under DNS load: a second is already more
# than any client's patience for a write should be asked to cover.
MAX_ACCEPT_ROUND = 1.0
# Each worker holds a whole copy of the registry's DNS tables: a bound on the memory a
# typo (--workers 1000) can ask for.
MAX_WORKERS = 64


class ConfigError(KdnsError):
    """The configuration is invalid. `setting` and `detail` are set when one Settings field
    is at fault (`detail` without the field's name and value), so that the command line can
    say where that value was given."""

    def __init__(self, message: str, *, setting: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.setting, self.detail = setting, detail


def _bad(setting: str, value: object, detail: str) -> ConfigError:
    return ConfigError(f"{setting.replace('_', ' ')} {value}: {detail}", setting=setting, detail=detail)


# --- Options and where their values come from -----------------------------------------------

ENV_PREFIX = "KDNS_"


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of a command, declared by its flag. `repeatable` flags may be given many
    times (their variable holds several values separated by `separator`, a file key a
    list); a `switch` takes no value on the command line (`--proxy`), true or false
    elsewhere. `secret` values are masked when the configuration is logged. `parse` turns
    what was given into the value of the Settings field `setting` (default: the option's
    name); options without one are read by their command itself."""

    flag: str
    help: str
    metavar: str | None = None
    repeatable: bool = False
    separator: str | None = None  # in the variable; None: the parser splits the value itself
    switch: bool = False
    choices: tuple[str, ...] = ()
    secret: bool = False
    parse: Callable[[Given], object] | None = None
    setting: str | None = None

    @property
    def name(self) -> str:
        """`dns_port`: the argparse dest."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """`KDNS_DNS_PORT`."""
        return ENV_PREFIX + self.name.upper()

    @property
    def key(self) -> str:
        """`dns-port`: the configuration file's key."""
        return self.flag.removeprefix("--")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.switch:
            parser.add_argument(self.flag, action="store_const", const="true", help=f"{self.help} ({self.env}=1)")
            return
        parser.add_argument(
            self.flag,
            action="append" if self.repeatable else "store",
            metavar=self.metavar,
            choices=self.choices or None,
            help=self.help,
        )


@dataclass(frozen=True, slots=True)
class Given:
    """A value given for an option, and where: `--ttl`, `KDNS_TTL` or `kdns.toml:3: ttl`.
    `values` has one item, or several for a repeatable option."""

    values: tuple[str, ...]
    source: str
    base: Path | None = None  # a file's directory, which relative paths in it are relative to

    @property
    def text(self) -> str:
        return ",".join(self.values)

    def error(self, detail: str) -> ConfigError:
        """`KDNS_TTL '9999': must be between 0 and 3600`."""
        return ConfigError(f"{self.source} {self.text!r}: {detail}")

    def wrap(self, exc: ConfigError) -> ConfigError:
        """A parser's own message, prefixed with where the value came from."""
        return ConfigError(f"{self.source}: {exc}")


CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")


def read_config_file(path: Path, options: Sequence[Option]) -> dict[str, Given]:
    """The values of a TOML or YAML configuration file, by option name: a flat mapping of
    keys named as the flags without their dashes (`dns-port = 1053`), lists for repeatable
    options. ConfigError names the file and line of a bad key or value."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        entries: list[tuple[object, object, int]] = [
            (key, value, _toml_line(text, key)) for key, value in data.items()
        ]
    elif path.suffix in (".yaml", ".yml"):
        entries = _yaml_entries(text, path)
    else:
        raise ConfigError(f"--config {path}: expected a .toml, .yaml or .yml file")
    by_key = {option.key: option for option in options}
    given: dict[str, Given] = {}
    for key, value, line in entries:
        source = f"{path}:{line}: {key}"
        option = by_key.get(key) if isinstance(key, str) else None
        if option is None:
            close = difflib.get_close_matches(str(key), by_key, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}:{line}: unknown key {key!r}{hint}")
        given[option.name] = Given(_file_values(value, option, source), source, path.parent)
    return given


def _file_values(value: object, option: Option, source: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) and option.repeatable else [value]
    values = []
    for item in items:
        if isinstance(item, bool):
            values.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            values.append(str(item))
        else:
            wanted = "a value or a list of values" if option.repeatable else "a single value"
            raise ConfigError(f"{source}: expected {wanted}, not {type(item).__name__}")
    return tuple(values)


def _toml_line(text: str, key: str) -> int:
    """The line of a top-level `key = ...` (tomllib keeps no positions)."""
    pattern = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return 1


def _yaml_entries(text: str, path: Path) -> list[tuple[object, object, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: expected a mapping of keys to values")
    loader = yaml.SafeLoader("")
    entries = []
    for key_node, value_node in node.value:
        entries.append((loader.construct_object(key_node, deep=True), loader.construct_object(value_node, deep=True),
                        key_node.start_mark.line + 1))
    return entries


def gather(
    options: Sequence[Option], args: argparse.Namespace, environ: Mapping[str, str],
    file: Mapping[str, Given] | None = None,
) -> dict[str, Given]:
    """What was given for each option, by name: the flag, else its variable, else the
    configuration file's key; options given nowhere are left out (their default holds)."""
    given: dict[str, Given] = {}
    for option in options:
        flag = getattr(args, option.name, None)
        if flag is not None:
            given[option.name] = Given(tuple(flag) if isinstance(flag, list) else (flag,), option.flag)
        elif option.env in environ:
            text = environ[option.env]
            values = [part for part in text.split(option.separator) if part] if option.separator else [text]
            given[option.name] = Given(tuple(values), option.env)
        elif file is not None and option.name in file:
            given[option.name] = file[option.name]
    return given


def to_integer(given: Given) -> int:
    """An integer; its range is Settings' to check (which names the field, see ConfigError)."""
    try:
        return int(given.text)
    except ValueError:
        raise given.error("not an integer") from None


def to_number(given: Given) -> float:
    try:
        return float(given.text)
    except ValueError:
        raise given.error("not a number") from None


def parsed_by(parse: Callable[..., object], *arguments: object) -> Callable[[Given], object]:
    """A `parse` for an Option from a parser of text that raises ConfigError in its own
    words: `parse(text, *arguments)`, its message prefixed with where the value was given."""

    def read(given: Given) -> object:
        try:
            return parse(given.text, *arguments)
        except ConfigError as exc:
            raise given.wrap(exc) from None

    return read


def to_text(given: Given) -> str:
    return given.text.strip()


def to_optional_text(given: Given) -> str | None:
    """The value, or None for an empty one or `none`."""
    text = given.text.strip()
    return None if not text or text.lower() == "none" else text


def to_path(given: Given) -> Path:
    """A path as given; one from a configuration file is relative to the file."""
    path = Path(given.text.strip())
    return given.base / path if given.base is not None and not path.is_absolute() else path


def to_optional_path(given: Given) -> Path | None:
    """A path, or None for an empty value or `none`."""
    return None if to_optional_text(given) is None else to_path(given)


def to_paths(given: Given) -> tuple[Path, ...]:
    return tuple(to_path(Given((value,), given.source, given.base)) for value in given.values)


def to_boolean(given: Given) -> bool:
    word = given.text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise given.error("expected true or false")


def default_manifests() -> tuple[Path, ...]:
    """The example cluster: `zones/` in a source checkout, or the copy inside the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "zones", here.parent / "zones"):
        if candidate.is_dir():
            return (candidate,)
    return ()


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
        raise _bad("zone", repr(zone), "must not be empty")
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            raise _bad("zone", repr(zone), f"label {label!r} must be 1-63 characters")
    if len(name) > 253:
        raise _bad("zone", repr(zone), "longer than 253 characters")
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
    # While DNS keeps the event loop busy, new API connections, and the requests of kept
    # ones, are taken together every this many seconds instead of one by one
    # (kdns/api/rounds.py); 0: one by one.
    api_accept_round: float = 0.05
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
    # The query log (`--log-queries`): one line per answer on stdout, in this format, one
    # answer in round(1 / log_queries_sample).
    log_queries: bool = False
    log_queries_format: str = "coredns"
    log_queries_sample: float = 1.0


    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", normalize_zone(self.zone))
        if len(self.nsid.encode("utf-8")) > MAX_NSID:
            raise _bad("nsid", repr(self.nsid), f"at most {MAX_NSID} bytes")
        if self.log_queries_format not in QUERY_LOG_FORMATS:
            raise _bad("log_queries_format", repr(self.log_queries_format), f"must be one of {', '.join(QUERY_LOG_FORMATS)}")
        if not 0 < self.log_queries_sample <= 1:
            raise _bad("log_queries_sample", self.log_queries_sample, "must be above 0 and at most 1")
        if not (0 <= self.ttl <= MAX_TTL):
            raise _bad("ttl", self.ttl, f"must be between 0 and {MAX_TTL}")
        if self.pods not in PODS_MODES:
            raise _bad("pods", repr(self.pods), f"must be one of {', '.join(PODS_MODES)}")
        if not (0 <= self.dns_port <= 65535):
            raise _bad("dns_port", self.dns_port, "must be between 0 and 65535")
        try:
            ipaddress.ip_address(self.dns_address)
        except ValueError:
            raise _bad("dns_address", repr(self.dns_address), "not an IP address") from None
        if not (1 <= self.workers <= MAX_WORKERS):
            raise _bad("workers", self.workers, f"must be between 1 and {MAX_WORKERS}")
        if self.event_log_size < 1:
            raise _bad("event_log_size", self.event_log_size, "must be at least 1")
        if self.follow_context is not None and self.follow is None:
            raise ConfigError("--follow-context needs --follow")
        if self.follow is not None and self.workers > 1:
            raise ConfigError("--follow serves from one process: --workers is not supported with it")
        if self.follow is not None and self.proxy:
            raise ConfigError("--follow runs no service proxy: --proxy is not supported with it")
        if self.follow is not None and self.etcd_endpoints:
            raise ConfigError("--follow serves the followed cluster's objects, kept in memory only: --store is not supported with it")
        if not (0 <= self.api_port <= 65535):
            raise _bad("api_port", self.api_port, "must be between 0 and 65535")
        try:
            api_ip = ipaddress.ip_address(self.api_address)
        except ValueError:
            raise _bad("api_address", repr(self.api_address), "not an IP address") from None
        if not api_ip.is_loopback and not self.api_token:
            raise _bad("api_address", self.api_address, "binding the API beyond loopback requires --api-token")
        if not (0 <= self.api_accept_round <= MAX_ACCEPT_ROUND):
            raise _bad("api_accept_round", f"{self.api_accept_round:g}", f"must be between 0 and {MAX_ACCEPT_ROUND:g} seconds")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        for name in ("cache_size", "cache_max_ttl", "cache_max_negative_ttl", "cache_stale_window"):
            if getattr(self, name) < 0:
                raise _bad(name, getattr(self, name), "must not be negative")
        if not (0 < self.forward_timeout <= self.forward_deadline):
            raise ConfigError("forward timeout must be positive and at most the forward deadline")
        low, high = self.node_port_range
        if not (1 <= low <= high <= 65535):
            raise ConfigError(f"node port range {low}-{high}: need 1 <= LOW <= HIGH <= 65535")
        if self.proxy_max_connections < 1:
            raise _bad("proxy_max_connections", self.proxy_max_connections, "must be at least 1")
        if self.node_address is not None:
            try:
                ipaddress.ip_address(self.node_address)
            except ValueError:
                raise _bad("node_address", repr(self.node_address), "not an IP address") from None

        if not self.etcd_prefix.startswith("/") or self.etcd_prefix.rstrip("/") == "":
            raise _bad("etcd_prefix", repr(self.etcd_prefix), "must be an absolute key path such as /kdns")
        if (self.etcd_certfile is None) != (self.etcd_keyfile is None):
            raise ConfigError("--etcd-certfile and --etcd-keyfile go together")
        if not (1 <= self.leader_elect_lease_duration <= 3600):
            raise _bad("leader_elect_lease_duration", f"{self.leader_elect_lease_duration:g}",
                       "must be between 1 and 3600 seconds")

    @property
    def reverse_zones(self) -> tuple[str, ...]:
        """The reverse zones kdns is authoritative for, as CoreDNS is usually configured."""
        return ("in-addr.arpa.", "ip6.arpa.")

    @property
    def soa_ttl(self) -> int:
        """The SOA record's own TTL: min(ttl, 300), as CoreDNS."""
        return min(self.ttl, 300)
