"""The benchmark's parts (bench/): reading dnsperf's output, the percentiles, the storm mix,
the scheduler's events replayed (schedtrace), the writers that flip pods' readiness
through a real kdns's API, writepairs' seconds with and without writes, and the seconds and
windows both leave out when the hypervisor took the cores (steal). The benchmark itself
is run by hand (bench/README.md); nothing here times anything."""

from __future__ import annotations

import json
import random
import socket
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import gen
from churn import markdown, summarize
from measure import parse_dnsperf, percentile
from procs import share
from schedtrace import replay
from writepairs import StealSampler, over_limit, per_second, ratios
from writes import WRITERS, KeptWriter, new_writer

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


# kdns 100 (its loop) and 101 (its journal writer) on CPU 1, a stranger 300, dnsperf 200 on
# CPU 0; as `perf script -F tid,cpu,time,event,trace` prints them, a line perf adds between.
SCHED = """\
  100 [001] 10.000000:       sched:sched_wakeup: comm=python pid=101 prio=135 target_cpu=001
  100 [001] 10.000010:       sched:sched_switch: prev_comm=python prev_pid=100 prev_prio=120 prev_state=R ==> next_comm=python next_pid=101 next_prio=135
  101 [001] 10.000310:       sched:sched_switch: prev_comm=python prev_pid=101 prev_prio=135 prev_state=D ==> next_comm=python next_pid=100 next_prio=120
  100 [001] 10.000400:       sched:sched_switch: prev_comm=python prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=my worker next_pid=300 next_prio=120
  200 [000] 10.000500:       sched:sched_wakeup: comm=python pid=100 prio=120 target_cpu=001
  300 [001] 10.001500:       sched:sched_switch: prev_comm=my worker prev_pid=300 prev_prio=120 prev_state=R ==> next_comm=python next_pid=100 next_prio=120
not an event line
  100 [001] 10.001600:       sched:sched_switch: prev_comm=python prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=python next_pid=101 next_prio=135
  101 [001] 10.001650:       sched:sched_wakeup: comm=python pid=100 prio=120 target_cpu=001
  101 [001] 10.001700:       sched:sched_switch: prev_comm=python prev_pid=101 prev_prio=135 prev_state=S ==> next_comm=python next_pid=100 next_prio=120
  100 [001] 10.002000:       sched:sched_switch: prev_comm=python prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
"""


def test_the_schedulers_events_say_who_held_the_loops_core() -> None:
    """The loop preempted by the writer for 300 µs, woken by dnsperf while a stranger runs
    (1 ms, named by its comm, spaces and all), then woken by the writer (its GIL, 50 µs):
    each wait is charged to who ran, in ms a second of the 2 ms recorded."""
    result = replay(SCHED.splitlines(), 100, "1", {100, 101})
    assert result["writer_tid"] == 101
    assert result["seconds"] == pytest.approx(0.002)
    assert result["loop_wait_ms_s_by"] == pytest.approx({"writer": 0.35 / 0.002, "others": 1.0 / 0.002})
    assert result["loop_wait_others"] == pytest.approx({"my worker": 1.0 / 0.002})
    assert result["loop_wait_ms_s"] == pytest.approx(1.35 / 0.002)
    assert result["loop_wait_max_us"] == pytest.approx(1000)
    assert result["loop_preempted_s"] == pytest.approx({"writer": 500.0})
    assert result["writer_holds_s"] == pytest.approx(1000.0) and result["writer_hold_max_us"] == pytest.approx(300)
    assert result["loop_woken_by_writer_s"] == pytest.approx(500.0)
    assert result["loop_sleep_before_writer_wake_p50_us"] == pytest.approx(50)
    assert result["on_cpu_ms_s"] == pytest.approx({"loop": 0.49 / 0.002, "writer 101": 0.40 / 0.002})


def test_no_events_no_figures() -> None:
    result = replay([], 100, "1", {100})
    assert result["seconds"] == 0.0 and result["loop_wait_ms_s"] == 0.0 and result["writer_tid"] is None


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


PODS = "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, namespace: default, labels: {{app: web}}}}
spec: {{containers: [{{name: app, image: nginx}}]}}
status: {{phase: Running, podIP: 10.0.0.{i + 1}, conditions: [{{type: Ready, status: "True"}}]}}
""" for i in range(2))


@pytest.mark.parametrize("kind", WRITERS)
def test_the_writers_flip_readiness_through_the_api(kdns_process: Any, kind: str) -> None:
    """Each of the bench's writers (writes.WRITERS: a connection per write, sent when due
    or one after another; kept connections, four or one) has every flip acknowledged,
    and the pods end where the flips leave them."""
    kdns = kdns_process(manifests=[PODS])
    pods = [gen.Pod(name=f"web-{i}", namespace="default", ip=f"10.0.0.{i + 1}", hostname=None, service="")
            for i in range(2)]
    writer = new_writer(kind, kdns.api_port, pods, rate=500, count=6)
    writer.run()  # in this thread: bounded by its count (and the replies)
    assert writer.errors == []
    assert len(writer.acknowledged) == writer.sent == 6
    for pod in pods:  # flips 0-1 unready, 2-3 ready, 4-5 unready
        with urllib.request.urlopen(f"{kdns.api_url}/api/v1/namespaces/default/pods/{pod.name}", timeout=5) as reply:
            conditions = json.load(reply)["status"]["conditions"]
        assert {c["type"]: c["status"] for c in conditions}["Ready"] == "False"


def test_the_kept_writer_sends_the_flips_queued_behind_the_one_in_flight(kdns_process: Any) -> None:
    """One client, every flip due at once: each waits for the reply before it, and the
    writer ends only when the last is answered."""
    kdns = kdns_process(manifests=[PODS])
    pods = [gen.Pod(name=f"web-{i}", namespace="default", ip=f"10.0.0.{i + 1}", hostname=None, service="")
            for i in range(2)]
    writer = KeptWriter(kdns.api_port, pods, rate=1e6, count=5, connections=1)
    writer.run()
    assert writer.errors == []
    assert len(writer.acknowledged) == writer.sent == 5


@pytest.mark.parametrize("kind", ["concurrent", "kubelets"])
def test_a_writer_counts_a_refused_connection_as_an_error(kind: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    pod = gen.Pod(name="web-0", namespace="default", ip="10.0.0.1", hostname=None, service="")
    writer = new_writer(kind, port, [pod], rate=100, count=2)
    writer.run()
    assert writer.sent == 2 and writer.acknowledged == [] and len(writer.errors) == 2


def test_writepairs_reads_dnsperf_seconds_and_compares_each_write_second_to_its_neighbours() -> None:
    out = "\n".join([
        "[Status] Sending queries (to 127.0.0.1:53)",
        "100.5: 1000.0", "101.5: 1010.0", "102.5: 800.0", "103.5: 790.0", "104.5: 990.0", "105.5: 1000.0",
        "Statistics:",
    ])
    seconds = per_second(out)
    assert seconds == [(100.5, 1000.0), (101.5, 1010.0), (102.5, 800.0), (103.5, 790.0), (104.5, 990.0),
                       (105.5, 1000.0)]
    # Writes on from 101.4 to 103.6: the seconds ending 102.5 and 103.5 are on; 101.5 and
    # 104.5 overlap the edges (neither); the others are write-free.
    found, free = ratios(seconds, [(101.4, 103.6)], period=2.0)
    assert free == [1000.0, 1000.0]
    assert found == [0.8, 0.79]


def test_writepairs_leaves_out_the_seconds_the_hypervisor_took() -> None:
    seconds = [(100.5, 1000.0), (101.5, 1010.0), (102.5, 800.0), (103.5, 300.0), (104.5, 990.0),
               (105.5, 1000.0), (106.5, 400.0)]
    # The second ending 103.5 (writes on) and 106.5 (writes off) were stolen: neither counts.
    found, free = ratios(seconds, [(101.4, 103.6)], period=2.0, stolen=frozenset({103.5, 106.5}))
    assert found == [0.8]
    assert free == [1000.0, 1000.0]


def test_the_steal_sampler_names_the_seconds_in_which_either_core_was_taken() -> None:
    sampler = StealSampler(("1", "0"))
    step = sampler.SAMPLE_S
    # Ticks of (server, client) as (stolen, total), 10 ticks a sample: the server's core
    # loses 2 of every 10 ticks between 101.0 and 102.0, nothing before or after.
    stolen_until = {"1": 0, "0": 0}
    for i in range(40):
        stamp = 100.0 + i * step
        if 101.0 < stamp <= 102.0 + 1e-9:
            stolen_until["1"] += 2
        sampler.samples.append((stamp, [(stolen_until["1"], 10 * i), (stolen_until["0"], 10 * i)]))
    taken = sampler.shares([101.0, 102.0, 103.0, 200.0])
    assert set(taken) == {101.0, 102.0, 103.0}  # no samples around 200: not measured
    assert over_limit(taken) == frozenset({102.0})
    assert share((5, 100), (5, 100)) is None
    assert share((0, 0), (3, 10)) == 0.3


def _window(phase: str, rate: int, position: int, qps: float, steal: float = 0.0) -> dict[str, Any]:
    return {"phase": phase, "window": position, "writes_per_s": rate, "qps": qps, "loss_pct": 0.0,
            "cpu_us_per_query": 1e6 / qps, "acknowledged": rate * 3, "server_core_others": 0.0, "steal": steal}


def test_churn_leaves_stolen_windows_out_of_the_baseline_and_the_target() -> None:
    def sequence(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"tree": "/src", "mix": "storm", "windows": rows}

    # Sequence 1: a no-write window and a 100/s window taken by the hypervisor (steal 0.4).
    first = sequence([_window("no writes", 0, 0, 1000.0), _window("no writes", 0, 1, 300.0, steal=0.4),
                      _window("10 writes/s", 10, 0, 980.0), _window("100 writes/s", 100, 0, 350.0, steal=0.4)])
    second = sequence([_window("no writes", 0, 0, 1000.0), _window("no writes", 0, 1, 1000.0),
                       _window("10 writes/s", 10, 0, 960.0), _window("100 writes/s", 100, 0, 950.0)])
    summary = summarize([first, second])["storm"]
    rows = summary["rows"]
    assert summary["baseline_qps"] == 1000.0  # the stolen 300 is not in it
    assert [r["stolen"] for r in rows] == [0, 1, 0, 1]
    assert rows[3]["qps"] == 950.0 and rows[3]["stolen_qps"] == [350.0]
    assert rows[3]["worst_ratio"] == 0.95  # only the second sequence's window judged
    assert summary["met"] and summary["min_ratio"] == 0.95
    assert summary["stolen"] == 2 and summary["windows"] == 8

    # Every sequence's 100/s window stolen: that window is not judged, and so the target is not met.
    both = summarize([first, sequence([*second["windows"][:3], _window("100 writes/s", 100, 0, 500.0, steal=0.2)])])
    assert both["storm"]["rows"][3]["qps_ratio"] is None
    assert not both["storm"]["met"]
    table = markdown({"plan": {"window_s": 3, "repeats": 2, "writer": "concurrent"}, "summary": both})
    assert "| storm | 100 writes/s | 1 | - | - | n/a | - | - | - | - | 2 (all) |" in table
    assert table[-1].endswith("| 0.97 x | 0.97 x | 0.000 % | 3 of 8 | **no** |")
