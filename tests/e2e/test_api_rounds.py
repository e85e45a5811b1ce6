"""A real kdns made busy by real DNS load (dnsperf, closed loop): its API takes new
connections, and the requests of kept ones, in rounds (`--api-accept-round`,
kdns/api/rounds.py) while the load lasts, and at once again when it stops; writes go
through meanwhile; DNS is answered throughout.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kdns.api.rounds import SAMPLE_S
from tests.conftest import Process

DNSPERF = shutil.which("dnsperf")
pytestmark = pytest.mark.skipif(DNSPERF is None, reason="dnsperf is not installed (Debian: apt-get install dnsperf)")

ROUND = 0.4
# An EDNS option (a client cookie, RFC 7873) on every query: no ready reply is kept for
# such a request (kdns/wire/fastpath.py), so each is answered the whole way, and kdns,
# not dnsperf, is what the load saturates, whatever else shares the machine's cores.
COOKIE = "10:0102030405060708"
LOAD_S = 6
# The example cluster's names (kdns's default manifests), asked over and over.
QUERIES = "\n".join((
    "kubernetes.default.svc.cluster.local A",
    "my-service.default.svc.cluster.local A",
    "my-service.default.svc.cluster.local AAAA",
    "nowhere.default.svc.cluster.local A",
    "1.0.96.10.in-addr.arpa PTR",
)) + "\n"


def _kept_get(connection: http.client.HTTPConnection, path: str) -> tuple[int, float]:
    """GET on a connection kept open (as a kubelet's): status, seconds."""
    began = time.monotonic()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status, time.monotonic() - began


def _get(url: str) -> tuple[int, float]:
    """GET on a connection of its own (urllib opens one per request): status, seconds."""
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.status, time.monotonic() - began


def test_new_connections_wait_for_rounds_only_while_dns_is_busy(
    kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    kdns = kdns_process("--api-accept-round", str(ROUND), manifests=None)
    livez = f"{kdns.api_url}/livez"
    _, quiet_before = _get(livez)
    kept = http.client.HTTPConnection("127.0.0.1", kdns.api_port, timeout=10)
    _, kept_quiet = _kept_get(kept, "/livez")
    time.sleep(3 * SAMPLE_S)  # that connection woke the sampler: a span with no query, and it rests again
    queries = tmp_path / "queries.txt"
    queries.write_text(QUERIES)
    assert DNSPERF is not None
    load = subprocess.Popen(
        [DNSPERF, "-s", "127.0.0.1", "-p", str(kdns.port), "-d", str(queries), "-l", str(LOAD_S), "-q", "100",
         "-E", COOKIE],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # The sampler rested while kdns was idle (kdns.api.rounds.LoopLoad): the first
        # connection under the load wakes it and is taken at once; the samples after it
        # (SAMPLE_S) say busy.
        time.sleep(1.0)
        _, waking = _get(livez)
        time.sleep(4 * SAMPLE_S)
        loaded = [_get(livez) for _ in range(3)]
        kept_loaded = _kept_get(kept, "/livez")  # open since before the load
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "under-load"}}
        request = urllib.request.Request(f"{kdns.api_url}/api/v1/namespaces", method="POST",
                                         data=json.dumps(namespace).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        out, _ = load.communicate(timeout=LOAD_S + 30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    time.sleep(0.5)
    _, quiet_after = _get(livez)
    _, kept_after = _kept_get(kept, "/livez")
    kept.close()

    assert [status for status, _ in loaded] == [200, 200, 200]
    # Each request came on a new connection while DNS kept kdns busy: each waited for
    # its round (the first connection of a round waits all of it)...
    assert min(took for _, took in loaded) >= ROUND * 0.75, (loaded, out)
    # ... and none without the load, nor the one that woke the sampler.
    assert quiet_before < ROUND * 0.75 and quiet_after < ROUND * 0.75, (quiet_before, quiet_after)
    assert waking < ROUND * 0.75, waking
    # A kept connection's request waited for a round under the load, and not without it.
    assert kept_loaded[0] == 200 and kept_loaded[1] >= ROUND * 0.75, (kept_loaded, out)
    assert kept_quiet < ROUND * 0.75 and kept_after < ROUND * 0.75, (kept_quiet, kept_after)
    # DNS was answered all along.
    completed = next(line for line in out.splitlines() if "Queries completed" in line)
    assert int(completed.split()[2]) > 1000 * LOAD_S, out
