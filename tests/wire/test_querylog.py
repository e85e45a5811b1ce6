"""The query log (--log-queries): one line per answer from a real kdns, CoreDNS's format or JSON."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.message
import dns.query
import pytest

from kdns.config import ConfigError, Settings
from kdns.wire.querylog import QueryLog

Z = "cluster.local."
CLUSTER = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.4.4
  ports:
    - {name: http, port: 80}
"""
# CoreDNS's log plugin, `{common}`.
COMMON = re.compile(
    r'^\[INFO\] 127\.0\.0\.1:(\d+) - (\d+) "(\S+) (\S+) (\S+) (udp|tcp) (\d+) (true|false) (\d+)" '
    r"(\S+) (\S*) (\d+) (\d+(\.\d+)?)s$"
)


def logged(capsys: pytest.CaptureFixture[str], count: int) -> list[str]:
    """The first `count` lines the server's query log wrote to stdout (waits up to 5 s)."""
    text = ""
    for _ in range(250):
        text += capsys.readouterr().out
        if text.count("\n") >= count:
            break
        time.sleep(0.02)
    return text.splitlines()


def test_coredns_format(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Every answer, the slow path's and the ready reply's, in CoreDNS's log format."""
    kdns = kdns_server(CLUSTER, log_queries=True, zones_dir=None)
    first = kdns.resolve(f"Web.default.svc.{Z}")
    kdns.resolve(f"web.default.svc.{Z}")  # from the ready-reply cache
    kdns.resolve(f"nope.default.svc.{Z}", "AAAA", tcp=True, use_edns=0, want_dnssec=True)
    lines = logged(capsys, 3)
    assert len(lines) == 3, lines
    parsed = [COMMON.match(line) for line in lines]
    assert all(parsed), lines
    one, two, three = (m.groups() for m in parsed if m)
    assert one[1] == str(first.id)
    assert one[2:9] == ("A", "IN", f"web.default.svc.{Z}", "udp", str(len(dns.message.make_query(f"Web.default.svc.{Z}", "A").to_wire())), "false", "512")
    assert (one[9], one[10]) == ("NOERROR", "qr,aa,rd")
    assert two[2:5] == ("A", "IN", f"web.default.svc.{Z}")
    assert three[2:9][:4] == ("AAAA", "IN", f"nope.default.svc.{Z}", "tcp")
    assert three[7:9] == ("true", "1232")
    assert (three[9], three[10]) == ("NXDOMAIN", "qr,aa,rd")


def test_json_lines_with_the_source(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """JSON lines carry where each answer came from; the ready reply's is inferred from its flags."""
    kdns = kdns_server(CLUSTER, log_queries=True, log_queries_format="json", zones_dir=None)
    for _ in range(2):
        kdns.resolve(f"web.default.svc.{Z}")
    kdns.resolve("www.example.org.")  # forwarding is off: REFUSED by kdns itself
    records = [json.loads(line) for line in logged(capsys, 3)]
    assert [(r["name"], r["type"], r["rcode"], r["source"]) for r in records] == [
        (f"web.default.svc.{Z}", "A", "NOERROR", "cluster"),
        (f"web.default.svc.{Z}", "A", "NOERROR", "cluster"),
        ("www.example.org.", "A", "REFUSED", "server"),
    ]
    first = records[0]
    assert first["client"] == "127.0.0.1" and first["proto"] == "udp" and first["flags"] == "qr,aa,rd"
    assert first["duration"] >= 0 and first["rsize"] > first["size"] > 0


def test_sampling(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """--log-queries-sample 0.25 logs one answer in four."""
    kdns = kdns_server(CLUSTER, log_queries=True, log_queries_format="json", log_queries_sample=0.25, zones_dir=None)
    for number in range(12):
        kdns.resolve(f"n{number}.default.svc.{Z}")
    records = [json.loads(line) for line in logged(capsys, 3)]
    assert [r["name"] for r in records] == [f"n{n}.default.svc.{Z}" for n in (0, 4, 8)]


def test_off_by_default(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    kdns = kdns_server(CLUSTER, zones_dir=None)
    kdns.resolve(f"web.default.svc.{Z}")
    assert kdns.app.dns.udp.query_log is None and kdns.app.dns.tcp.query_log is None
    assert capsys.readouterr().out == ""


def test_a_stalled_writer_never_blocks_and_counts_what_it_left_out() -> None:
    """The event loop only queues; past MAX_PENDING queued answers the rest are dropped, counted."""
    import threading

    import kdns.wire.querylog as querylog

    writing, unstuck = threading.Event(), threading.Event()

    class Stuck(io.StringIO):
        def write(self, text: str) -> int:
            writing.set()
            unstuck.wait(10)  # a terminal nobody reads, until the test is done
            return len(text)

    log = QueryLog(Stuck(), "json", 1.0, (Z,))
    reply = dns.message.make_query(f"web.default.svc.{Z}", "A").to_wire()
    log.record(reply, reply, "127.0.0.1", 5353, "udp", 0.0)
    assert writing.wait(5)  # the writer is stuck in its first write
    started = time.monotonic()
    for _ in range(querylog.MAX_PENDING + 1000):
        log.record(reply, reply, "127.0.0.1", 5353, "udp", 0.0)
    assert time.monotonic() - started < 5
    assert log.dropped == 1000
    unstuck.set()
    log.close()
    assert log.written == querylog.MAX_PENDING + 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"log_queries_format": "yaml"}, "log queries format 'yaml': must be one of coredns, json"),
        ({"log_queries": True, "log_queries_sample": 0.0}, "log queries sample 0.0: must be above 0 and at most 1"),
        ({"log_queries_sample": 1.5}, "log queries sample 1.5: must be above 0 and at most 1"),
        ({"nsid": "x" * 129}, "at most 128 bytes"),
    ],
)
def test_bad_settings(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings(**fields)


def test_udp_query_reaches_the_log_over_a_socket(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """dig-like request with EDNS options (a cookie) goes through the slow path and is logged with its bufsize."""
    kdns = kdns_server(CLUSTER, log_queries=True, zones_dir=None)
    query = dns.message.make_query(f"web.default.svc.{Z}", "A", use_edns=0, payload=4096, options=[dns.edns.GenericOption(10, b"12345678")])
    dns.query.udp(query, kdns.address, port=kdns.port, timeout=3)
    [line] = logged(capsys, 1)
    match = COMMON.match(line)
    assert match and match[9] == "4096", line


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["--log-queries"], {}, (True, "coredns", 1.0, "")),
        (["--log-queries", "--log-queries-format", "json", "--log-queries-sample", "0.5"], {}, (True, "json", 0.5, "")),
        ([], {"KDNS_LOG_QUERIES": "1", "KDNS_NSID": "r-2"}, (True, "coredns", 1.0, "r-2")),
        ([], {"KDNS_LOG_QUERIES": "off"}, (False, "coredns", 1.0, "")),
        (["--nsid", "replica-1"], {"KDNS_NSID": "other"}, (False, "coredns", 1.0, "replica-1")),
    ],
)
def test_flags_and_their_environment_twins(argv: list[str], environ: dict[str, str], expected: tuple[Any, ...]) -> None:
    from kdns.cli import _parser, settings_from

    args = _parser().parse_args(["serve", "--upstream", "none", *argv])
    settings, _ = settings_from(args, environ)
    assert (settings.log_queries, settings.log_queries_format, settings.log_queries_sample, settings.nsid) == expected


def test_bad_flags_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from kdns.cli import main

    assert main(["serve", "--log-queries-format", "xml"], {}) == 2
    assert main(["serve", "--log-queries", "--log-queries-sample", "2"], {}) == 2
    assert "must be above 0 and at most 1" in capsys.readouterr().err
