"""The real `dig` against `kdns serve`, as a person debugging cluster DNS would use it.

These are the README walk-through's commands, against the example cluster (zones/):

    dig @127.0.0.1 -p 1053 my-service.default.svc.cluster.local
    dig @127.0.0.1 -p 1053 +tcp my-service.default.svc.cluster.local
    dig @127.0.0.1 -p 1053 SRV _http._tcp.my-service.default.svc.cluster.local
    dig @127.0.0.1 -p 1053 -x 10.96.1.2
    dig @127.0.0.1 -p 1053 no-such-service.default.svc.cluster.local

Each test reads what a person reads: the status line, the flags, and the sections.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DIG = shutil.which("dig")
pytestmark = pytest.mark.skipif(DIG is None, reason="`dig` is not installed (Debian: apt-get install dnsutils)")

DIG_TIMEOUT = 15.0
_STATUS = re.compile(r";; ->>HEADER<<- opcode: (\w+), status: (\w+), id: (\d+)")
_FLAGS = re.compile(r";; flags:([^;]*);")
_SECTION = re.compile(r";; (\w+) SECTION:")
_SERVER = re.compile(r";; SERVER: ([^#]+)#(\d+)\(([^)]*)\) \((UDP|TCP)\)")


@dataclass
class Dig:
    """What dig printed, read the way a person reads it."""

    text: str
    opcode: str = ""
    status: str = ""
    flags: set[str] = field(default_factory=set)
    sections: dict[str, list[str]] = field(default_factory=dict)
    transport: str = ""

    def section(self, name: str) -> list[str]:
        """The records of a section as `owner ttl class type rdata`, whitespace collapsed, sorted."""
        return sorted(self.sections.get(name, []))


def parse(text: str) -> Dig:
    out = Dig(text)
    current: str | None = None
    for line in text.splitlines():
        if match := _STATUS.match(line):
            out.opcode, out.status = match[1], match[2]
        elif match := _FLAGS.match(line):
            out.flags = set(match[1].split())
        elif match := _SERVER.match(line):
            out.transport = match[4]
        elif match := _SECTION.match(line):
            current = match[1]
            out.sections[current] = []
        elif not line.strip():
            current = None
        elif current is not None and current not in ("QUESTION", "OPT") and not line.startswith(";"):
            out.sections[current].append(" ".join(line.split()))
    return out


def dig(kdns: Any, *args: str, home: Path) -> Dig:
    """Run `dig @ADDRESS -p PORT ARGS...` (no ~/.digrc: HOME is an empty directory)."""
    assert DIG is not None
    argv = [DIG, f"@{kdns.address}", "-p", str(kdns.port), *args]
    result = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=DIG_TIMEOUT, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return parse(result.stdout)


@pytest.fixture
def example(kdns_process: Callable[..., Any]) -> Any:
    """`kdns serve` with the example cluster, as a person starts it."""
    return kdns_process(manifests=None)


def test_dig_a(example: Any, tmp_path: Path) -> None:
    """`dig my-service.default.svc.cluster.local` shows NOERROR, an authoritative answer and the cluster IP."""
    out = dig(example, "my-service.default.svc.cluster.local", home=tmp_path)
    assert (out.opcode, out.status, out.transport) == ("QUERY", "NOERROR", "UDP"), out.text
    assert "aa" in out.flags and "ra" not in out.flags, out.text
    assert out.section("ANSWER") == ["my-service.default.svc.cluster.local. 5 IN A 10.96.1.2"], out.text
    assert "AUTHORITY" not in out.sections, out.text


def test_dig_tcp(example: Any, tmp_path: Path) -> None:
    """`dig +tcp` gets the same answer over TCP."""
    out = dig(example, "+tcp", "my-service.default.svc.cluster.local", home=tmp_path)
    assert (out.status, out.transport) == ("NOERROR", "TCP"), out.text
    assert "aa" in out.flags, out.text
    assert out.section("ANSWER") == ["my-service.default.svc.cluster.local. 5 IN A 10.96.1.2"], out.text


def test_dig_srv(example: Any, tmp_path: Path) -> None:
    """`dig SRV _http._tcp.my-service...` shows the port and target, and the target's address in ADDITIONAL."""
    out = dig(example, "SRV", "_http._tcp.my-service.default.svc.cluster.local", home=tmp_path)
    assert out.status == "NOERROR", out.text
    assert out.section("ANSWER") == [
        "_http._tcp.my-service.default.svc.cluster.local. 5 IN SRV 0 100 80 my-service.default.svc.cluster.local."
    ], out.text
    assert out.section("ADDITIONAL") == ["my-service.default.svc.cluster.local. 5 IN A 10.96.1.2"], out.text


def test_dig_reverse(example: Any, tmp_path: Path) -> None:
    """`dig -x <cluster IP>` names the service."""
    out = dig(example, "-x", "10.96.1.2", home=tmp_path)
    assert out.status == "NOERROR", out.text
    assert out.section("ANSWER") == [
        "2.1.96.10.in-addr.arpa. 5 IN PTR my-service.default.svc.cluster.local."
    ], out.text


def test_dig_nxdomain_shows_the_soa(example: Any, tmp_path: Path) -> None:
    """A name that does not exist is NXDOMAIN with the zone's SOA in AUTHORITY."""
    out = dig(example, "no-such-service.default.svc.cluster.local", home=tmp_path)
    assert out.status == "NXDOMAIN", out.text
    assert "aa" in out.flags, out.text
    assert "ANSWER" not in out.sections, out.text
    [soa] = out.section("AUTHORITY")
    owner, ttl, rdclass, rdtype, mname, rname, _serial, *timers = soa.split()
    assert (owner, ttl, rdclass, rdtype, mname, rname) == (
        "cluster.local.", "5", "IN", "SOA", "ns.dns.cluster.local.", "hostmaster.cluster.local."
    ), out.text
    assert timers == ["7200", "1800", "86400", "5"], out.text
