"""The `kdns` command: `serve`, `validate`, `reset` and `register`.

`serve` reads its settings from flags, `KDNS_*` environment variables and a configuration
file (`--config kdns.toml` or `.yaml`), in that order of precedence. Each is declared once,
as an `Option` in SERVE_OPTIONS: its variable and its file key follow from the flag
(`--dns-port`: `KDNS_DNS_PORT`, `dns-port`). Every bad value is reported with where it was
given (`--ttl`, `KDNS_TTL`, `kdns.toml:3: ttl`). This is the only module that reads the
environment (with kdns.register, for its own flags).

Exit codes: 0 after SIGTERM or SIGINT, 1 when the cluster cannot be loaded or served (a
bad manifest, a port in use) or `validate` found a problem, 2 for a bad flag or setting.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from kdns import __version__, explain, register
from kdns.config import (
    PODS_MODES,
    QUERY_LOG_FORMATS,
    ConfigError,
    Given,
    Option,
    Settings,
    default_data_dir,
    default_manifests,
    gather,
    parse_networks,
    parse_port_range,
    parse_service_cidrs,
    parse_store,
    parsed_by,
    read_config_file,
    to_boolean,
    to_integer,
    to_number,
    to_optional_path,
    to_optional_text,
    to_path,
    to_paths,
    to_text,
)
from kdns.errors import KdnsError
from kdns.runtime import loop_factory, setup_logging

__all__ = ["SERVE_OPTIONS", "main"]

log = logging.getLogger("kdns")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error")
# The directory a user's cluster is in when kdns is run beside it: `./zones`, as in this
# repository, wins over the example cluster installed with kdns.
LOCAL_ZONES = Path("zones")
ZONE_SUFFIX = ".zone"

def _networks(text: str, what: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return parse_networks([text], what)


# Every setting of `serve`, declared once: the flag, and from it the KDNS_* variable and the
# configuration file's key; `parse` reads the value into its Settings field. The five
# without a `parse` (values that depend on others) are read in `configure`.
SERVE_OPTIONS: tuple[Option, ...] = (
    Option("--manifests", "a YAML file or a directory of them (read recursively); repeatable "
           f"(KDNS_MANIFESTS: paths separated by {os.pathsep!r}; default ./zones when it exists, "
           "else the example cluster)", "PATH", repeatable=True, separator=os.pathsep, parse=to_paths),
    Option("--dns-address", "address to serve DNS on (default 127.0.0.1)", "IP", parse=to_text),
    Option("--dns-port", "UDP and TCP port; 0 picks a free one (default 1053)", "PORT", parse=to_integer),
    Option("--zone", "the cluster zone (default cluster.local)", "ZONE", parse=to_text),
    Option("--ttl", "record TTL, 0-3600 (default 5)", "SECONDS", parse=to_integer),
    Option("--pods", "pod A records (default verified)", choices=PODS_MODES, parse=to_text),
    Option("--service-cidr", "service IP ranges (default 10.96.0.0/12,fd00:10:96::/112)", "CIDR[,CIDR]",
           parse=parsed_by(parse_service_cidrs), setting="service_cidrs"),
    Option("--node-port-range", "NodePort range (default 30000-32767)", "LOW-HIGH",
           parse=parsed_by(parse_port_range)),
    Option("--upstream", "upstream resolver for other names; repeatable; `none` turns forwarding off "
           "(default `auto`: the nameservers of /etc/resolv.conf, kdns itself excluded)",
           "ADDR[:PORT]", repeatable=True, setting="upstreams"),
    Option("--allow-recursion", "clients allowed to resolve names kdns is not authoritative for; "
           "repeatable (default loopback and the private ranges)", "CIDR", repeatable=True,
           parse=parsed_by(_networks, "allow recursion")),
    Option("--cache-size", "forwarding cache entries, 0 for none (default 10000)", "N", parse=to_integer),
    Option("--cache-max-ttl", "cap on a cached answer's TTL (default 3600)", "SECONDS", parse=to_integer),
    Option("--cache-max-negative-ttl", "cap on a cached negative answer's TTL (default 300)", "SECONDS",
           parse=to_integer),
    Option("--zones-dir", "static RFC 1035 zone files (*.zone) to serve, reloaded on SIGHUP; `none` for "
           "none (default ./zones when it exists, else the example zones/)", "DIR", parse=to_optional_path),
    Option("--autopath", "answer a known pod's search-path expansion of an outside name at once", switch=True,
           parse=to_boolean),
    Option("--api-address", "address of the HTTP API (default 127.0.0.1)", "IP", parse=to_text),
    Option("--api-port", "port of the HTTP API; 0 picks a free one (default 8080)", "PORT", parse=to_integer),
    Option("--api-accept-round", "while DNS keeps kdns busy, new API connections, and the requests of kept "
           "ones, are taken together this often, not one by one: each waits at most this long, DNS keeps "
           "its time; 0: one by one (default 0.05)", "SECONDS", parse=to_number),
    Option("--api-token", "bearer token the API requires (required off loopback; kubectl sends it only "
           "over https: add --tls-cert and --tls-key)", "TOKEN", secret=True, parse=to_optional_text),
    Option("--tls-cert", "serve the API over TLS with this certificate (with --tls-key)", "FILE",
           parse=to_optional_path),
    Option("--tls-key", "the private key of --tls-cert", "FILE", parse=to_optional_path),
    Option("--data-dir", "where the registry is stored (default $XDG_STATE_HOME/kdns or "
           "~/.local/state/kdns)", "DIR"),
    Option("--ephemeral", "keep the registry in memory only", switch=True, setting="data_dir"),
    Option("--proxy", "make ClusterIPs and NodePorts reachable: forward their connections to ready "
           "endpoints at random, as kube-proxy", switch=True, parse=to_boolean),
    Option("--proxy-interface", "add ClusterIPs to this interface (needs CAP_NET_ADMIN); `none` (the "
           "default): they are routed already", "IFACE", parse=to_optional_text),
    Option("--node-address", "this node's address, where the proxy opens NodePorts (default: none)", "IP",
           parse=to_optional_text),
    Option("--proxy-max-connections", "open connections and UDP flows per service the proxy allows "
           "(default 1000)", "N", parse=to_integer),
    Option("--workers", "processes answering DNS on the port (SO_REUSEPORT), each with a copy of the "
           "registry kept in step by this one; one per core (default 1)", "N", parse=to_integer),
    Option("--event-log-size", "changes kept for watches to resume from and list pages to continue from; "
           "older versions get 410 Expired, as after etcd's compaction (default 10000)", "N", parse=to_integer),
    Option("--follow", "serve DNS for the cluster of this kubeconfig, listing and watching its API, instead "
           "of a registry of kdns's own (no manifests, data dir, controllers or proxy)", "KUBECONFIG",
           parse=to_optional_path),
    Option("--follow-context", "the kubeconfig context to follow (default: its current-context)", "NAME",
           parse=to_optional_text),
    Option("--store", "where the registry lives: sqlite (the default, under --data-dir) or "
           "etcd://HOST:PORT[,HOST:PORT...], shared by every kdns on the same etcd and prefix", "URL",
           setting="etcd_endpoints"),
    Option("--etcd-prefix", "the registry's keys in etcd (default /kdns)", "PREFIX", parse=to_text),
    Option("--etcd-cafile", "talk https to etcd, verifying its members with this CA", "FILE",
           parse=to_optional_path),
    Option("--etcd-certfile", "client certificate for etcd (with --etcd-keyfile)", "FILE", parse=to_optional_path),
    Option("--etcd-keyfile", "the private key of --etcd-certfile", "FILE", parse=to_optional_path),
    Option("--leader-elect-lease-duration", "with etcd: the controller lease; a replica that dies hands the "
           "readiness prober over within about this long (default 15)", "SECONDS", parse=to_number),
    Option("--log-level", "default info", choices=LOG_LEVELS),
    Option("--nsid", "this server's name, sent to clients that ask for it with EDNS NSID (RFC 5001; "
           "`dig +nsid`), so you can tell which replica answered (default: none)", "TEXT", parse=to_text),
    Option("--log-queries", "log every answer on stdout, one line each (default off)", switch=True,
           parse=to_boolean),
    Option("--log-queries-format", "the query log's format: coredns (CoreDNS's log plugin) or json "
           "(default coredns)", choices=QUERY_LOG_FORMATS, parse=to_text),
    Option("--log-queries-sample", "log this fraction of the answers, 0-1: one in round(1/RATE) "
           "(default 1: all)", "RATE", parse=to_number),
)
# The configuration file, which names the others' file keys; a flag or KDNS_CONFIG only.
CONFIG_OPTION = Option("--config", "a TOML or YAML file of settings, keyed as the flags without "
                       "their dashes (`dns-port = 1053`); flags and KDNS_* variables override it", "FILE")


class _UsageError(Exception):
    """A flag argparse could not read."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    CONFIG_OPTION.add_to(parser)
    for option in SERVE_OPTIONS:
        option.add_to(parser)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdns", description="Kubernetes-style service discovery DNS from an embedded registry.")
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = commands.add_parser(
        "serve",
        help="load the manifests and serve DNS",
        description="Load the manifests and serve DNS. Every flag can also be set by the KDNS_* "
        "environment variable of the same name (--dns-port: KDNS_DNS_PORT) or by the key of the "
        "same name in --config (dns-port); the flag wins over the variable, the variable over the file.",
    )
    _add_settings(serve)
    validate = commands.add_parser(
        "validate",
        help="check manifests, zone files and the configuration without serving",
        description="Check manifests (as the API checks them), zone files and the configuration "
        "(flags, KDNS_* variables, --config) without serving; every problem is listed. PATHs are "
        "manifest files, *.zone files, or directories of both; without PATH, the --manifests and "
        "--zones-dir of the configuration are checked.",
    )
    validate.add_argument("paths", nargs="*", metavar="PATH", help="a manifest, a zone file, or a directory")
    _add_settings(validate)
    reset = commands.add_parser(
        "reset",
        help="delete the saved registry, to start from an empty one",
        description="Delete the registry saved in --data-dir, after saying what it holds; the next "
        "`kdns serve` starts from the manifests alone. Refused while a kdns serves from it.",
    )
    reset.add_argument("--data-dir", metavar="DIR", help="the data directory (default $XDG_STATE_HOME/kdns "
                       "or ~/.local/state/kdns; KDNS_DATA_DIR)")
    register.add_parser(commands)
    explain.add_parser(commands)
    return parser


# --- Settings from what was given ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configuration:
    """The settings `serve` runs with, its log level, and what was given for them where."""

    settings: Settings
    log_level: str
    given: Mapping[str, Given]

    def describe(self) -> str:
        """`dns-port=0 (--dns-port) zone=cluster.local. ...`: every option's effective value,
        and where it was given when it was; secrets masked."""
        settings = self.settings
        words = []
        for option in SERVE_OPTIONS:
            name = option.name
            if name == "log_level":
                value: Any = self.log_level
            elif name == "ephemeral":
                value = settings.data_dir is None
            elif name == "node_port_range":
                value = "{}-{}".format(*settings.node_port_range)
            else:
                value = getattr(settings, option.setting or name)
            text = _describe_value(value)
            if option.secret and value:
                text = "****"
            given = self.given.get(name)
            words.append(f"{option.key}={text}" + (f" ({given.source})" if given is not None else ""))
        return " ".join(words)


def _describe_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _upstreams(given: Given | None, fields: Mapping[str, Any]) -> tuple[str, ...]:
    # (dnspython, behind kdns.pipeline.forward: imported only where needed)
    from kdns.pipeline.forward import Upstream

    words = ["auto"] if given is None else [w for value in given.values for w in value.replace(",", " ").split()]
    lowered = [word.lower() for word in words]
    if lowered == ["auto"]:
        return _auto_upstreams(fields)
    assert given is not None
    if "none" in lowered:
        if len(words) > 1:
            raise given.wrap(ConfigError(f"upstream: `none` cannot be combined with addresses ({' '.join(words)})"))
        return ()
    try:
        return tuple(str(Upstream.parse(word)) for word in words)
    except ConfigError as exc:
        raise given.wrap(exc) from None


def _auto_upstreams(settings_fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The host's resolv.conf nameservers, without kdns itself (a forwarding loop)."""
    from kdns.pipeline.forward import Upstream, host_nameservers

    address = settings_fields.get("dns_address", Settings.__dataclass_fields__["dns_address"].default)
    port = settings_fields.get("dns_port", Settings.__dataclass_fields__["dns_port"].default)
    return tuple(str(Upstream(ns)) for ns in host_nameservers(exclude=[(address, port)]))


def _example_dir() -> Path | None:
    """`./zones` when the working directory has one, else the example cluster kdns installs."""
    if LOCAL_ZONES.is_dir():
        return LOCAL_ZONES
    return next(iter(default_manifests()), None)


def configure(args: argparse.Namespace, environ: Mapping[str, str]) -> Configuration:
    """The Configuration that flags, the environment and --config ask for; ConfigError names
    the flag, variable, or file and line of a bad value."""
    file: dict[str, Given] = {}
    config = gather([CONFIG_OPTION], args, environ).get("config")
    if config is not None:
        file = read_config_file(Path(config.text), SERVE_OPTIONS)
    given = gather(SERVE_OPTIONS, args, environ, file)
    example = _example_dir()
    fields: dict[str, Any] = {"manifests": (example,) if example is not None else (), "zones_dir": example}
    for option in SERVE_OPTIONS:
        if option.parse is not None and option.name in given:
            fields[option.setting or option.name] = option.parse(given[option.name])

    if fields.get("follow") is not None:
        for name in ("manifests", "data_dir"):
            if name in given:
                raise ConfigError(f"{given[name].source}: --follow serves the followed cluster's objects, "
                                  "kept in memory only")
    ephemeral, data_dir = given.get("ephemeral"), given.get("data_dir")
    if ephemeral is not None and to_boolean(ephemeral):
        if data_dir is not None and data_dir.text:
            raise ConfigError(f"{ephemeral.source} and {data_dir.source} exclude each other")
        fields["data_dir"] = None
    else:
        fields["data_dir"] = to_path(data_dir) if data_dir and data_dir.text else default_data_dir(environ)
    fields["upstreams"] = _upstreams(given.get("upstream"), fields)
    if (store := given.get("store")) is not None:
        if (data_dir := given.get("data_dir")) is not None and parse_store(store.text, tls=False):
            # With the registry on etcd there is no journal: refuse the flag rather than
            # let a user believe the data directory holds anything.
            raise ConfigError(f"{data_dir.source}: the registry lives in etcd with --store etcd://...; "
                              "no data directory is used")
        # https when a CA or a client certificate for etcd is given
        tls = fields.get("etcd_cafile") is not None or fields.get("etcd_certfile") is not None
        fields["etcd_endpoints"] = parsed_by(lambda text: parse_store(text, tls=tls))(store)

    level = "info"
    if (g := given.get("log_level")) is not None:
        level = g.text.lower()
        if level not in LOG_LEVELS:
            raise g.error(f"must be one of {', '.join(LOG_LEVELS)}")
    try:
        settings = Settings(**fields)
    except ConfigError as exc:
        raise _located(exc, given) from None
    return Configuration(settings, level, given)


def _located(exc: ConfigError, given: Mapping[str, Given]) -> ConfigError:
    """Settings' error about one field, said of the flag, variable or file line that set it."""
    names = {option.setting or option.name: option.name for option in SERVE_OPTIONS if option.parse is not None}
    source = given.get(names.get(exc.setting or "", ""))
    if source is None or exc.detail is None:
        return exc
    return source.error(exc.detail)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Settings, str]:
    """Settings and the log level from parsed flags, the environment and --config."""
    configuration = configure(args, environ)
    return configuration.settings, configuration.log_level


# --- The commands -------------------------------------------------------------------------


async def _serve_until_signalled(configuration: Configuration) -> None:
    # Imported here, so `kdns --version` and flag errors need nothing but the config (and
    # the follower, which imports the API and aiohttp's client, only to follow).
    from kdns.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        if configuration.settings.follow is not None:
            from kdns.follow import follower

            log.info("configuration: %s", configuration.describe())
            await follower.serve(configuration.settings, stop)
        else:
            await serve(configuration.settings, stop, lambda _: log.info("configuration: %s", configuration.describe()))
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _error(message: object) -> None:
    print(f"kdns: error: {message}", file=sys.stderr)


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        configuration = configure(args, environ)
    except ConfigError as exc:
        _error(exc)
        return EXIT_CONFIG
    setup_logging(configuration.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_serve_until_signalled(configuration))
    except ConfigError as exc:
        _error(exc)
        return EXIT_CONFIG
    except (KdnsError, OSError) as exc:
        _error(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_OK
    return EXIT_OK


@dataclass(slots=True)
class Report:
    """What `kdns validate` read, and every problem it found (each names its place)."""

    files: int = 0
    objects: int = 0
    zones: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.objects} objects in {self.files} manifest files, {self.zones} zones"


def check_paths(manifests: Sequence[Path], zones: Sequence[Path], settings: Settings) -> Report:
    """Read `manifests` (files or directories) as `serve` would and apply them to a registry
    of their own, and read `zones` (zone files or directories of them): every problem."""
    from kdns.authority.static import StaticZones
    from kdns.registry import declared
    from kdns.registry.manifests import read_paths
    from kdns.zonefiles import read_files
    from kdns.zonefiles import reload as read_zones

    report = Report()
    loaded = read_paths(manifests)
    report.files, report.warnings = len(loaded.files), list(loaded.warnings)
    report.errors.extend(map(str, loaded.errors))
    refused = declared.check(loaded.documents, settings.service_cidrs, settings.node_port_range)
    report.errors.extend(map(str, refused))
    report.objects = len(loaded.documents) - len(refused)
    for path in zones:
        served, problems = read_zones(path, StaticZones()) if path.is_dir() else read_files([path])
        report.zones += len(served.zones)
        report.errors.extend(map(str, problems))
    return report


def _validate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Every problem of the configuration and of the manifests and zone files, listed;
    exit 1 if there is one."""
    errors: list[str] = []
    try:
        settings = configure(args, environ).settings
    except ConfigError as exc:
        errors.append(str(exc))
        settings = Settings(manifests=(), zones_dir=None)
    manifests: list[Path] = []
    zones: list[Path] = []
    for path in map(Path, args.paths):
        if path.suffix != ZONE_SUFFIX:
            manifests.append(path)
        if path.suffix == ZONE_SUFFIX or path.is_dir():
            zones.append(path)
    if not args.paths and not errors:
        manifests = list(settings.manifests)
        zones = [settings.zones_dir] if settings.zones_dir is not None else []
    report = check_paths(manifests, zones, settings)
    for warning in report.warnings:
        print(f"kdns: warning: {warning}", file=sys.stderr)
    for error in [*errors, *report.errors]:
        _error(error)
    problems = len(errors) + len(report.errors)
    summary = f"{report.summary()}; configuration {'invalid' if errors else 'valid'}"
    if problems:
        print(f"kdns validate: {problems} problem{'s' if problems > 1 else ''}: {summary}", file=sys.stderr)
        return EXIT_FAILED
    print(f"kdns validate: OK: {summary}", file=sys.stderr)
    return EXIT_OK


def _reset(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from kdns.registry.sqlite import FILE_NAME, StorageError, erase

    data_dir = gather([Option("--data-dir", "")], args, environ).get("data_dir")
    directory = Path(data_dir.text) if data_dir is not None else default_data_dir(environ)
    try:
        version = erase(directory / FILE_NAME, announce=lambda text: print(f"kdns reset: {text}", file=sys.stderr))
    except StorageError as exc:
        _error(exc)
        return EXIT_FAILED
    if version is None:
        print(f"kdns reset: no registry in {directory}: nothing to delete", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the `kdns` command; returns the exit code."""
    environ = os.environ if environ is None else environ
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _error(exc)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command == "explain":
        return explain.run(args, environ)
    if args.command == "register":
        return register.run(args, environ)
    if args.command == "validate":
        return _validate(args, environ)
    if args.command == "reset":
        return _reset(args, environ)
    if args.command != "serve":
        parser.print_usage(sys.stderr)
        _error("a command is required: kdns serve, validate, reset or register")
        return EXIT_CONFIG
    return _serve(args, environ)

