"""`kdns serve`: flags and KDNS_* environment variables -> Settings -> a running server.

Every flag has an environment twin named after it (`--dns-port` <-> `KDNS_DNS_PORT`); the
flag wins. This is the only module that reads the environment. Exit codes: 0 after
SIGTERM or SIGINT, 1 when the cluster cannot be loaded or served (a bad manifest, a port
in use), 2 for a bad flag or setting. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kdns import __version__, explain, register
from kdns.config import (
    PODS_MODES,
    QUERY_LOG_FORMATS,
    ConfigError,
    Settings,
    default_data_dir,
    flag_or_env,
    parse_networks,
    parse_port_range,
    parse_service_cidrs,
    parse_store,
)
from kdns.errors import KdnsError
from kdns.runtime import loop_factory, setup_logging

__all__ = ["main"]

log = logging.getLogger("kdns")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error")


class _UsageError(Exception):
    """A flag argparse could not read."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdns", description="Kubernetes-style service discovery DNS from an embedded registry.")
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = commands.add_parser(
        "serve",
        help="load the manifests and serve DNS",
        description="Load the manifests and serve DNS. Every flag can also be set by the "
        "KDNS_* environment variable of the same name (--dns-port: KDNS_DNS_PORT); the flag wins.",
    )
    add = serve.add_argument
    add(
        "--manifests",
        action="append",
        metavar="PATH",
        help="a YAML file or a directory of them; repeatable (KDNS_MANIFESTS: paths separated by "
        f"{os.pathsep!r}; default: the example cluster)",
    )
    add("--dns-address", metavar="IP", help="address to serve DNS on (default 127.0.0.1)")
    add("--dns-port", metavar="PORT", help="UDP and TCP port; 0 picks a free one (default 1053)")
    add("--zone", metavar="ZONE", help="the cluster zone (default cluster.local)")
    add("--ttl", metavar="SECONDS", help="record TTL, 0-3600 (default 5)")
    add("--pods", choices=PODS_MODES, help="pod A records (default verified)")
    add("--service-cidr", metavar="CIDR[,CIDR]", help="service IP ranges (default 10.96.0.0/12,fd00:10:96::/112)")
    add("--node-port-range", metavar="LOW-HIGH", help="NodePort range (default 30000-32767)")
    add(
        "--upstream",
        action="append",
        metavar="ADDR[:PORT]",
        help="upstream resolver for other names; repeatable; `none` turns forwarding off "
        "(default `auto`: the nameservers of /etc/resolv.conf, kdns itself excluded)",
    )
    add("--allow-recursion", action="append", metavar="CIDR",
        help="clients allowed to resolve names kdns is not authoritative for; repeatable "
        "(default loopback and the private ranges)")
    add("--cache-size", metavar="N", help="forwarding cache entries, 0 for none (default 10000)")
    add("--cache-max-ttl", metavar="SECONDS", help="cap on a cached answer's TTL (default 3600)")
    add("--cache-max-negative-ttl", metavar="SECONDS", help="cap on a cached negative answer's TTL (default 300)")
    add("--zones-dir", metavar="DIR",
        help="static RFC 1035 zone files (*.zone) to serve, reloaded on SIGHUP; `none` for none "
        "(default: the example zones/)")
    add("--autopath", action="store_const", const="true",
        help="answer a known pod's search-path expansion of an outside name at once (KDNS_AUTOPATH=1)")
    add("--api-address", metavar="IP", help="address of the HTTP API (default 127.0.0.1)")
    add("--api-port", metavar="PORT", help="port of the HTTP API; 0 picks a free one (default 8080)")
    add("--api-token", metavar="TOKEN", help="bearer token the API requires (required off loopback; "
        "kubectl sends it only over https: add --tls-cert and --tls-key)")
    add("--tls-cert", metavar="FILE", help="serve the API over TLS with this certificate (with --tls-key)")
    add("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    add("--data-dir", metavar="DIR", help="where the registry is stored (default $XDG_STATE_HOME/kdns "
        "or ~/.local/state/kdns)")
    add("--ephemeral", action="store_const", const="true",
        help="keep the registry in memory only (KDNS_EPHEMERAL=1)")
    add("--proxy", action="store_const", const="true",
        help="make ClusterIPs and NodePorts reachable: forward their connections to ready endpoints "
        "at random, as kube-proxy (KDNS_PROXY=1)")
    add("--proxy-interface", metavar="IFACE",
        help="add ClusterIPs to this interface (needs CAP_NET_ADMIN); `none` (the default): "
        "they are routed already")
    add("--node-address", metavar="IP", help="this node's address, where the proxy opens NodePorts "
        "(default: none)")
    add("--proxy-max-connections", metavar="N",
        help="open connections and UDP flows per service the proxy allows (default 1000)")
    add("--workers", metavar="N",
        help="processes answering DNS on the port (SO_REUSEPORT), each with a copy of the registry "
        "kept in step by this one; one per core (default 1)")
    add("--event-log-size", metavar="N",
        help="changes kept for watches to resume from and list pages to continue from; older "
        "versions get 410 Expired, as after etcd's compaction (default 10000)")
    add("--follow", metavar="KUBECONFIG",
        help="serve DNS for the cluster of this kubeconfig, listing and watching its API, instead "
        "of a registry of kdns's own (no manifests, data dir, controllers or proxy)")
    add("--follow-context", metavar="NAME", help="the kubeconfig context to follow (default: its current-context)")
    add("--store", metavar="URL", help="where the registry lives: sqlite (the default, under --data-dir) "
        "or etcd://HOST:PORT[,HOST:PORT...], shared by every kdns on the same etcd and prefix")
    add("--etcd-prefix", metavar="PREFIX", help="the registry's keys in etcd (default /kdns)")
    add("--etcd-cafile", metavar="FILE", help="talk https to etcd, verifying its members with this CA")
    add("--etcd-certfile", metavar="FILE", help="client certificate for etcd (with --etcd-keyfile)")
    add("--etcd-keyfile", metavar="FILE", help="the private key of --etcd-certfile")
    add("--leader-elect-lease-duration", metavar="SECONDS",
        help="with etcd: the controller lease; a replica that dies hands the readiness prober "
        "over within about this long (default 15)")
    add("--log-level", choices=LOG_LEVELS, help="default info")
    add("--nsid", metavar="TEXT", help="this server's name, sent to clients that ask for it with EDNS NSID "
        "(RFC 5001; `dig +nsid`), so you can tell which replica answered (default: none)")
    add("--log-queries", nargs="?", const="coredns", metavar="FORMAT",
        help=f"log every answer on stdout, one line each: {' or '.join(QUERY_LOG_FORMATS)} "
        "(CoreDNS's log plugin format, or JSON lines); default off (KDNS_LOG_QUERIES=coredns)")
    add("--log-queries-sample", metavar="RATE",
        help="log this fraction of the answers, 0-1: one in round(1/RATE) (default 1: all)")
    register.add_parser(commands)
    explain.add_parser(commands)
    return parser


def _integer(text: str, source: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{source} {text!r}: not an integer") from None


def _upstreams(values: Sequence[str]) -> tuple[str, ...]:
    words = [word for value in values for word in value.replace(",", " ").split()]
    if any(word.lower() == "none" for word in words):
        if len(words) > 1:
            raise ConfigError(f"upstream: `none` cannot be combined with addresses ({' '.join(words)})")
        return ()
    from kdns.pipeline.forward import (
        Upstream,  # (dnspython: imported only where needed)
    )

    return tuple(str(Upstream.parse(word)) for word in words)


def _boolean(text: str, source: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{source} {text!r}: expected true or false")


def _auto_upstreams(settings_fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The host's resolv.conf nameservers, without kdns itself (a forwarding loop)."""
    from kdns.pipeline.forward import Upstream, host_nameservers

    address = settings_fields.get("dns_address", Settings.__dataclass_fields__["dns_address"].default)
    port = settings_fields.get("dns_port", Settings.__dataclass_fields__["dns_port"].default)
    return tuple(str(Upstream(ns)) for ns in host_nameservers(exclude=[(address, port)]))


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Settings, str]:
    """Settings and the log level from parsed flags and the environment; ConfigError if bad."""
    fields: dict[str, Any] = {}

    manifests, _ = flag_or_env(args, environ, "manifests")
    if isinstance(manifests, str):
        manifests = [part for part in manifests.split(os.pathsep) if part]
    if manifests:
        fields["manifests"] = tuple(Path(path) for path in manifests)

    for name in ("dns_address", "zone", "pods"):
        value, _ = flag_or_env(args, environ, name)
        if value is not None:
            fields[name] = value
    for name in ("dns_port", "ttl"):
        value, source = flag_or_env(args, environ, name)
        if value is not None:
            fields[name] = _integer(value, source)

    value, _ = flag_or_env(args, environ, "service_cidr")
    if value is not None:
        fields["service_cidrs"] = parse_service_cidrs(value)
    value, _ = flag_or_env(args, environ, "node_port_range")
    if value is not None:
        fields["node_port_range"] = parse_port_range(value)
    for name in ("api_address", "api_token"):
        value, _ = flag_or_env(args, environ, name)
        if value:
            fields[name] = value
    for name in ("api_port", "cache_size", "cache_max_ttl", "cache_max_negative_ttl", "workers", "event_log_size"):
        value, source = flag_or_env(args, environ, name)
        if value is not None:
            fields[name] = _integer(value, source)
    for name in ("tls_cert", "tls_key"):
        value, _ = flag_or_env(args, environ, name)
        if value:
            fields[name] = Path(value)
    value, source = flag_or_env(args, environ, "autopath")
    if value is not None:
        fields["autopath"] = _boolean(value, source)
    value, source = flag_or_env(args, environ, "proxy")
    if value is not None:
        fields["proxy"] = _boolean(value, source)
    value, _ = flag_or_env(args, environ, "proxy_interface")
    if value:
        fields["proxy_interface"] = None if value.strip().lower() == "none" else value.strip()
    value, _ = flag_or_env(args, environ, "node_address")
    if value:
        fields["node_address"] = value.strip()
    value, source = flag_or_env(args, environ, "proxy_max_connections")
    if value is not None:
        fields["proxy_max_connections"] = _integer(value, source)
    value, _ = flag_or_env(args, environ, "zones_dir")
    if value is not None:
        fields["zones_dir"] = None if value.strip().lower() == "none" else Path(value)
    value, _ = flag_or_env(args, environ, "allow_recursion")
    if value is not None:
        fields["allow_recursion"] = parse_networks([value] if isinstance(value, str) else value, "allow recursion")

    value, _ = flag_or_env(args, environ, "follow")
    if value:
        fields["follow"] = Path(value)
        for name in ("manifests", "data_dir"):
            given, source = flag_or_env(args, environ, name)
            if given:
                raise ConfigError(f"{source}: --follow serves the followed cluster's objects, kept in memory only")
    value, _ = flag_or_env(args, environ, "follow_context")
    if value:
        fields["follow_context"] = value

    value, source = flag_or_env(args, environ, "ephemeral")
    ephemeral = value is not None and _boolean(value, source)
    value, _ = flag_or_env(args, environ, "data_dir")
    if ephemeral:
        if value:
            raise ConfigError("--ephemeral and --data-dir exclude each other")
        fields["data_dir"] = None
    else:
        fields["data_dir"] = Path(value) if value else default_data_dir(environ)

    for name in ("etcd_cafile", "etcd_certfile", "etcd_keyfile"):
        value, _ = flag_or_env(args, environ, name)
        if value:
            fields[name] = Path(value)
    value, _ = flag_or_env(args, environ, "store")
    if value is not None:
        tls = any(name in fields for name in ("etcd_cafile", "etcd_certfile"))
        fields["etcd_endpoints"] = parse_store(value, tls=tls)
    value, _ = flag_or_env(args, environ, "etcd_prefix")
    if value:
        fields["etcd_prefix"] = value
    value, source = flag_or_env(args, environ, "leader_elect_lease_duration")
    if value is not None:
        try:
            fields["leader_elect_lease_duration"] = float(value)
        except ValueError:
            raise ConfigError(f"{source} {value!r}: not a number") from None

    value, _ = flag_or_env(args, environ, "upstream")
    values = ["auto"] if value is None else [value] if isinstance(value, str) else value
    if [word.strip().lower() for word in values] == ["auto"]:
        fields["upstreams"] = _auto_upstreams(fields)
    else:
        fields["upstreams"] = _upstreams(values)

    value, _ = flag_or_env(args, environ, "nsid")
    if value:
        fields["nsid"] = value
    value, source = flag_or_env(args, environ, "log_queries")
    if value is not None:
        word = value.strip().lower()
        if word in QUERY_LOG_FORMATS:
            fields["log_queries"] = word
        else:
            try:
                on = _boolean(word, source)
            except ConfigError:
                raise ConfigError(
                    f"{source} {value!r}: expected a format ({', '.join(QUERY_LOG_FORMATS)}) or true/false"
                ) from None
            if on:
                fields["log_queries"] = QUERY_LOG_FORMATS[0]
    value, source = flag_or_env(args, environ, "log_queries_sample")
    if value is not None:
        try:
            fields["log_queries_sample"] = float(value)
        except ValueError:
            raise ConfigError(f"{source} {value!r}: not a number") from None

    level, source = flag_or_env(args, environ, "log_level")
    level = (level or "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{source} {level!r}: must be one of {', '.join(LOG_LEVELS)}")
    return Settings(**fields), level


async def _serve_until_signalled(settings: Settings) -> None:
    # Imported here, so `kdns --version` and flag errors need nothing but the config.
    if settings.follow is not None:
        from kdns.follow.follower import serve
    else:
        from kdns.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        await serve(settings, stop)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the `kdns` command; returns the exit code."""
    environ = os.environ if environ is None else environ
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command == "register":
        return register.run(args, environ)
    if args.command == "explain":
        return explain.run(args, environ)
    if args.command != "serve":
        parser.print_usage(sys.stderr)
        print("kdns: error: a command is required: kdns serve", file=sys.stderr)
        return EXIT_CONFIG

    try:
        settings, level = settings_from(args, environ)
    except ConfigError as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(level)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_serve_until_signalled(settings))
    except ConfigError as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (KdnsError, OSError) as exc:
        print(f"kdns: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_OK
    return EXIT_OK
