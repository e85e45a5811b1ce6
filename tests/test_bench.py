"""The benchmark's pure parts (bench/): reading dnsperf's output, the percentiles, the storm mix.
The benchmark itself is run by hand (bench/README.md); nothing here times anything."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import gen
from measure import parse_dnsperf, percentile

OUTPUT = """\
DNS Performance Testing Tool
Version 2.10.0

> NOERROR web.default.svc.cluster.local. A 0.000150
> NXDOMAIN nope.default.svc.cluster.local. A 0.000310
> T web.default.svc.cluster.local. A
> NOERROR web.default.svc.cluster.local. A 0.002000

Statistics:

  Queries sent:         400
  Queries completed:    399 (99.75%)
  Queries lost:         1 (0.25%)

  Response codes:       NOERROR 360 (90.23%), NXDOMAIN 39 (9.77%)
  Average packet size:  request 45, response 120
  Run time (s):         2.000123
  Queries per second:   199.487823

  Average Latency (s):  0.000150 (min 0.000050, max 0.002000)
  Latency StdDev (s):   0.000050
"""


def test_dnsperf_output_becomes_figures() -> None:
    """Answers per second of the sending window (not dnsperf's own figure), loss, rcodes,
    whether the rate held, and per-answer latencies (timeouts left out) in ms."""
    run = parse_dnsperf(OUTPUT, seconds=2.0, rate=200, verbose=True)
    assert (run["sent"], run["completed"], run["qps"], run["qps_dnsperf"]) == (400, 399, 199.5, 199.487823)
    assert run["loss_pct"] == pytest.approx(0.25) and run["sent_ratio"] == 1.0 and run["holds"] is False
    assert run["rcodes"] == {"NOERROR": 360, "NXDOMAIN": 39}
    assert (run["request_bytes"], run["response_bytes"]) == (45, 120)
    assert run["latency_samples"] == 3
    assert run["latency_ms"]["p50"] == pytest.approx(0.31) and run["latency_ms"]["max"] == pytest.approx(2.0)


def test_a_failed_dnsperf_run_has_no_figures() -> None:
    """Output without statistics (dnsperf could not run) says so: `sent` is None."""
    run = parse_dnsperf("Error: could not open datafile\n", seconds=1.0, rate=None)
    assert run["sent"] is None and "qps_dnsperf" not in run


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 99, 99.9, 100)] == [50.0, 99.0, 100.0, 100.0]
    assert percentile([], 99) is None


def test_the_storm_mix_is_half_cluster_questions_half_search_path_misses() -> None:
    """`gen.storm_mix`: half the bench mix, half outside names with one of a pod's ndots:5
    search suffixes appended (A and AAAA), none of which exists; the same for a seed."""
    spec = gen.Spec(namespaces=3, services=12, headless=2, headless_pods=2, queries=400)
    cluster = gen.build(spec)
    records = gen.records(cluster)
    mix = gen.storm_mix(cluster, records, 400, random.Random(7))
    assert Counter(category for category, _, _ in mix) == {"cluster": 200, "search-path": 200}
    suffixes = (*(f"{ns}.svc.{gen.ZONE}" for ns in cluster.namespaces), f"svc.{gen.ZONE}", gen.ZONE)
    misses = [(name, qtype) for category, name, qtype in mix if category == "search-path"]
    assert all(name.endswith(suffixes) and not records.exists(name) for name, _ in misses)
    assert {qtype for _, qtype in misses} == {"A", "AAAA"}
    assert {name.split(".")[1] for name, _ in misses} <= {d.split(".")[0] for d in gen.OUTSIDE_DOMAINS}
    assert gen.storm_mix(cluster, records, 400, random.Random(7)) == mix
