"""What the twin's client container does, run inside its namespace: glibc resolution and HTTP.

Standard library only, run by `ip netns exec` so that /etc/resolv.conf is the client's
(kdns, the pod search path, ndots:5): every name goes through glibc's getaddrinfo, as curl's
and any program's would. Prints one JSON value.

    client.py resolve NAME                      addresses of NAME
    client.py answers NAME PORT                 {address: body of GET http://address:PORT/}
    client.py wait NAME [--with IP]... [--without IP]... --limit S
                                                {"at": time.time() when it first held}
    client.py spread URL N                      {body or error name: count} of N GETs of URL,
                                                one new connection each
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.request


def resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({info[4][0] for info in infos})


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.read().decode()


def main() -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("resolve").add_argument("name")
    answers = commands.add_parser("answers")
    answers.add_argument("name")
    answers.add_argument("port", type=int)
    wait = commands.add_parser("wait")
    wait.add_argument("name")
    wait.add_argument("--with", dest="present", action="append", default=[])
    wait.add_argument("--without", dest="absent", action="append", default=[])
    wait.add_argument("--limit", type=float, required=True)
    spread = commands.add_parser("spread")
    spread.add_argument("url")
    spread.add_argument("count", type=int)
    args = parser.parse_args()
    if args.command == "resolve":
        print(json.dumps(resolve(args.name)))
    elif args.command == "spread":
        counts: dict[str, int] = {}
        for _ in range(args.count):
            try:
                body = get(args.url)
            except OSError as exc:
                body = type(exc).__name__
            counts[body] = counts.get(body, 0) + 1
        print(json.dumps(counts))
    elif args.command == "answers":
        print(json.dumps({address: get(f"http://{address}:{args.port}/") for address in resolve(args.name)}))
    else:
        deadline = time.monotonic() + args.limit
        for _ in range(int(args.limit / 0.02) + 1):  # every 20 ms, bounded
            addresses = resolve(args.name)
            if all(a in addresses for a in args.present) and not any(a in addresses for a in args.absent):
                print(json.dumps({"at": time.time(), "addresses": addresses}))
                return 0
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        print(json.dumps({"at": None, "addresses": resolve(args.name)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
