"""The benchmark's pure parts (bench/): reading dnsperf's output and the percentiles.
The benchmark itself is run by hand (bench/README.md); nothing here times anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

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
