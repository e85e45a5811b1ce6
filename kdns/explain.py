"""`kdns explain NAME [TYPE]`: why kdns answers NAME what it answers.

    kdns explain db-0.db.default.svc.cluster.local
    kdns explain _http._tcp.web.default.svc.cluster.local SRV --server http://10.0.0.2:8080 --api-token T
    kdns explain web.default.svc.cluster.local --manifests zones/ --json

By default it asks a running kdns (`GET /debug/explain` on its API, `--server`, with
`--api-token` off loopback), which reads its live registry, static zones and cache. With
`--manifests` it needs no server: it loads the manifests (and `--zones-dir`) as `kdns
serve` would, without forwarding, and explains from that. The output is text, or with
`--json` the API's JSON. See kdns.pipeline.explain for what an explanation holds.

Every flag has a KDNS_* environment twin (`--server`: KDNS_SERVER, `--api-token`:
KDNS_API_TOKEN, ...); the flag wins. Exit codes: 0 explained, 1 the server or the
manifests could not be read, 2 a bad flag, name or type.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from kdns.errors import KdnsError

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8080"
REQUEST_TIMEOUT = 10.0
PATH = "/debug/explain"


class ExplainError(KdnsError):
    """The explanation could not be had: the server or the manifests."""


_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)  # kdns.cli's own parser class


def _options() -> tuple[Any, ...]:
    """The command's options (kdns.config.Option: each flag with its KDNS_* variable)."""
    import os

    from kdns.config import Option

    return (
        Option("--server", f"the kdns API (default {DEFAULT_SERVER})", "URL"),
        Option("--api-token", "bearer token of the API", "TOKEN", secret=True),
        Option("--manifests", "explain offline from these manifests (files or directories; repeatable) "
               "instead of a server", "PATH", repeatable=True, separator=os.pathsep),
        Option("--zones-dir", "offline: static zone files to load too (default none)", "DIR"),
        Option("--zone", "offline: the cluster zone (default cluster.local)", "ZONE"),
        Option("--pods", "offline: pod records, disabled|insecure|verified (default verified)", "MODE"),
        Option("--client", "explain the answer this client gets (the recursion ACL and autopath depend "
               "on it; default 127.0.0.1)", "IP"),
    )


def add_parser(commands: argparse._SubParsersAction[_ParserT]) -> _ParserT:
    """Add `explain` to `kdns`'s subcommands (an argparse subparsers object)."""
    parser = commands.add_parser(
        "explain",
        help="explain why kdns answers a name what it answers",
        description="Explain the answer to NAME TYPE: the rule, the objects it came from, the endpoints "
        "left out and why, the TTL and the source. Asks a running kdns's API, or with --manifests "
        "explains offline. Every flag has a KDNS_* environment twin.",
    )
    parser.add_argument("name", metavar="NAME", help="the name asked, e.g. web.default.svc.cluster.local")
    parser.add_argument("type", metavar="TYPE", nargs="?", default="A", help="the record type (default A)")
    for option in _options():
        option.add_to(parser)
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    return parser


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`kdns explain` with parsed flags and the environment; returns the exit code."""
    from kdns.config import ConfigError, gather
    from kdns.pipeline.explain import CLIENT, Explanation, qtype_number

    gathered = gather(_options(), args, environ)
    given = {name: value.text for name, value in gathered.items()}
    paths = gathered.get("manifests")
    client = given.get("client") or CLIENT
    try:
        qtype = qtype_number(args.type)
        if paths is not None:
            explanation = asyncio.run(_offline(args, given, [Path(p) for p in paths.values if p], qtype, client))
        else:
            server = (given.get("server") or DEFAULT_SERVER).rstrip("/")
            explanation = Explanation.from_dict(
                asyncio.run(_online(server, given.get("api_token"), args.name, args.type, client))
            )
    except (ValueError, ConfigError) as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KdnsError as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2))
    else:
        sys.stdout.write(explanation.render())
    return EXIT_OK


async def _online(server: str, token: str | None, name: str, qtype: str, client: str) -> dict[str, Any]:
    """The JSON of `GET /debug/explain` on `server`."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{server}{PATH}?{urlencode({'name': name, 'type': qtype, 'client': client})}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session,
            session.get(url, headers=headers) as response,
        ):
            body = await response.text()
            if response.status == 400:
                raise ValueError(_message(body))
            if response.status != 200:
                raise ExplainError(f"{url}: {response.status} {_message(body)}")
            data: dict[str, Any] = json.loads(body)
            return data
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ExplainError(f"cannot reach the kdns API at {server}: {str(exc) or type(exc).__name__}") from None


def _message(body: str) -> str:
    """A Kubernetes Status's message, else the body."""
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError):
        return body.strip()


async def _offline(
    args: argparse.Namespace, given: Mapping[str, str], paths: list[Path], qtype: int, client: str
) -> Any:
    """Explain from the manifests alone: the registry, index and zones `kdns serve` would load."""
    from kdns.app import load_registry, load_static
    from kdns.authority.index import ClusterIndex
    from kdns.authority.static import ZoneError
    from kdns.config import Settings
    from kdns.pipeline.chain import Router
    from kdns.pipeline.explain import explain
    from kdns.registry.errors import RegistryError

    fields: dict[str, Any] = {"manifests": tuple(paths), "zones_dir": None, "data_dir": None}
    for name in ("zone", "pods"):
        if given.get(name):
            fields[name] = given[name]
    zones_dir = given.get("zones_dir")
    if zones_dir and zones_dir.strip().lower() != "none":
        fields["zones_dir"] = Path(zones_dir)
    settings = Settings(**fields)
    try:
        store, warnings = load_registry(settings)
        static = load_static(settings)
    except (RegistryError, ZoneError, OSError) as exc:
        raise ExplainError(str(exc)) from None
    for warning in warnings:
        print(f"kdns explain: {warning}", file=sys.stderr)
    index = ClusterIndex(settings)
    index.rebuild(store.objects(), store.resource_version)
    router = Router(index, settings, static=static)
    return await explain(
        args.name,
        qtype,
        router=router,
        index=index,
        static=static,
        objects=store.list,
        settings=settings,
        client=client,
    )
