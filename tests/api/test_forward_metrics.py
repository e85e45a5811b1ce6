"""/metrics exports what the forwarder and its cache count (kdns_forward_*, kdns_cache_*)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

from tests.upstream import UpstreamServer


def test_forward_and_cache_counters_are_in_metrics(kdns_server: Callable[..., Any]) -> None:
    """/metrics exports the forwarder's and the cache's counters (kdns_forward_*, kdns_cache_*)."""
    with UpstreamServer(host="127.0.0.65") as upstream:
        kdns = kdns_server(zones_dir=None, upstreams=(upstream.where,))
        kdns.resolve("www.example.test.")
        # Over TCP, whose ready-reply cache is empty yet: the forwarding cache answers.
        kdns.resolve("www.example.test.", tcp=True)
        with urllib.request.urlopen(f"{kdns.api_url}/metrics", timeout=5) as response:
            text = response.read().decode()
    counters = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(("kdns_forward_", "kdns_cache_"))
    )
    # One question went to the forwarder, one came from the cache; the upstream got two
    # requests: that question and the loop probe kdns sends at start.
    assert float(counters["kdns_forward_queries_total"]) == 1.0
    assert float(counters["kdns_forward_requests_total"]) == 2.0
    assert float(counters["kdns_cache_hits_total"]) == 1.0
    assert float(counters["kdns_cache_stores_total"]) == 1.0
    assert float(counters["kdns_cache_entries"]) == 1.0
    for name in ("coalesced", "tcp_retries", "failures", "timeouts", "servfails", "loops"):
        assert f"kdns_forward_{name}_total" in counters
    assert "kdns_cache_stale_hits_total" in counters and "kdns_cache_misses_total" in counters
