"""results.json into tables (results.md), a plot (results.png) and the results section
of bench/README.md."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import churn
import gen
from common import (
    CHANGE_WORKERS,
    HERE,
    LOSS_LIMIT_PCT,
    OUTSTANDING_RATE,
    SENT_RATIO_MIN,
    TARGETS,
    UPSTREAM_ADDRESS,
    WORKER_SOCKETS,
)


def fmt(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}{unit}"
    return str(value)


def targets_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    servers = results.get("servers", {})
    k, n = servers.get("kdns"), servers.get("knot")
    if k and n:
        ratio = k["throughput"]["max_rate"] / n["throughput"]["max_rate"] if n["throughput"]["max_rate"] else None
        kc, nc = k["throughput"].get("per_cpu_second"), n["throughput"].get("per_cpu_second")
        cpu_ratio = kc / nc if kc and nc else None
        met, note = ratio is not None and ratio >= TARGETS["throughput_ratio"], ""
        if n["throughput"].get("client_bound") and met:
            # Knot's max is dnsperf's, so the ratio is only an upper bound: judge by CPU per answer.
            met = cpu_ratio is not None and cpu_ratio >= TARGETS["throughput_ratio"]
            note = (f"Knot's max is dnsperf's (Knot's core was not full), so {fmt(ratio, 2)} is an upper bound; "
                    f"judged by answers per CPU-second instead: {fmt(cpu_ratio, 2)}")
        elif n["throughput"].get("client_bound"):
            note = "Knot's max is dnsperf's: the true ratio is lower still"
        rows.append({"target": "cluster answers, max qps with < 0.1 % loss, kdns/Knot", "goal": f">= {TARGETS['throughput_ratio']}",
                     "value": f"{fmt(ratio, 3)} ({fmt(k['throughput']['max_rate'])} / {fmt(n['throughput']['max_rate'])})",
                     "met": met, "note": note})
        if cpu_ratio is not None:
            rows.append({"target": "(context) answers per CPU-second at max, kdns/Knot", "goal": "—",
                         "value": f"{fmt(cpu_ratio, 3)} ({fmt(kc)} / {fmt(nc)})", "met": None,
                         "note": "1 / (server utime+stime per answered query): one full core's worth, not limited by the client"})
    if k:
        at20 = next((x for x in k["latency"] if x["load"] == 20000), None)
        if at20:
            p99 = at20["latency_ms"]["p99"]
            reached = (at20["sent_ratio"] or 0) >= SENT_RATIO_MIN
            ok = p99 is not None and p99 < TARGETS["p99_ms_at_20k"] and (at20["loss_pct"] or 0) < LOSS_LIMIT_PCT and reached
            rows.append({"target": "kdns p99 latency at 20,000 qps", "goal": f"< {TARGETS['p99_ms_at_20k']} ms",
                         "value": f"{fmt(p99, 3)} ms (answered {fmt(at20['qps'])}/s, loss {fmt(at20['loss_pct'], 2)} %)",
                         "met": ok, "note": "" if reached else
                         f"the offered load was not reached: with {OUTSTANDING_RATE} queries in flight dnsperf "
                         "waited for kdns (saturated), so these latencies are a closed loop's"})
    for key, target in (("change", "registry change -> visible answer p99, under 20,000 qps"),
                        ("change_workers", (f"--workers {CHANGE_WORKERS}: commit -> applied in every worker, "
                                           "under 20,000 qps"))):
        change = results.get(key, {})
        if "skipped" in change:
            rows.append({"target": target, "goal": "< 10 ms", "value": "not measured", "met": None,
                         "note": change["skipped"]})
        elif change and key == "change":  # from just before the API write to the answer
            p99 = change["latency_ms"]["p99"]
            rows.append({"target": target, "goal": "< 10 ms",
                         "value": f"{fmt(p99, 2)} ms ({change['changes']} changes)", "met": p99 is not None and p99 < 10,
                         "note": f"{change['error_count']} errors" if change["error_count"] else ""})
        elif change:
            # "Every worker serves the same state within 10 ms of a change": judged by kdns's
            # own clock (commit in the primary -> applied in the worker, one monotonic clock),
            # as asking from outside adds the client's time: the harness shares dnsperf's core.
            sync = change.get("worker_sync") or {}
            within = sync.get("share_within", {}).get("10 ms")
            outside = change["after_commit_ms"]
            note = (f"kdns_worker_sync_seconds, mean {fmt(sync.get('mean_ms'), 2)} ms, {sync.get('applied', 0)} "
                    f"commits; both kdns processes share the server core. Asked from outside (16 source ports, "
                    f"from the PUT's reply): p50 {fmt(outside['p50'], 2)} ms, p99 {fmt(outside['p99'], 2)} ms")
            if change["error_count"]:
                note += f"; {change['error_count']} errors"
            rows.append({"target": target, "goal": "< 10 ms",
                         "value": (f"p99 <= {fmt(sync.get('p99_at_most_ms'), 1)} ms, "
                                   f"{fmt(100 * within if within is not None else None, 1)} % within 10 ms"),
                         "met": within is not None and within >= 0.99, "note": note})
    workers = results.get("workers", {})
    if "skipped" in workers:
        rows.append({"target": "(context) --workers: cost and load share on one core", "goal": "—",
                     "value": "not measured", "met": None, "note": workers["skipped"]})
    elif workers.get("workers_1"):
        many = workers.get(f"workers_{workers['workers']}", {})
        rows.append({"target": f"(context) --workers {workers['workers']} vs 1 on the one core, closed loop",
                     "goal": "—",
                     "value": (f"answers/s x{fmt(workers.get('qps_ratio'), 2)}, CPU per answer "
                               f"x{fmt(workers.get('cpu_ratio'), 2)}, CPU share by process "
                               f"{' / '.join(fmt(x, 0) for x in many.get('cpu_share_pct', []))} %"),
                     "met": None,
                     "note": (f"{workers['clients']} dnsperf sockets; {fmt(workers['workers_1']['qps'])} vs "
                              f"{fmt(many.get('qps'))} answers/s, {fmt(workers['workers_1']['cpu_us_per_query'], 2)} vs "
                              f"{fmt(many.get('cpu_us_per_query'), 2)} µs. The second core is dnsperf's, so here the "
                              "processes take turns on one core: this is the cost of sharing it and the kernel's "
                              "split of the load, not the gain of a core per worker, which this machine cannot show")})
    churned = results.get("churn", {})
    for mix, summary in churned.get("summary", {}).items():
        rows.append({"target": (f"no stall, {mix} mix: every {fmt(churned['plan']['window_s'], 0)} s window at 10 and "
                                "100 writes/s, from the first write, x no-write answers/s"),
                     "goal": f">= {churn.TARGET_RATIO}, loss < {LOSS_LIMIT_PCT} %",
                     "value": (f"lowest {fmt(summary['min_ratio'], 2)}, first-write window "
                               f"{fmt(summary['first_write_ratio'], 2)}, highest loss {fmt(summary['max_loss_pct'], 3)} %"),
                     "met": summary["met"],
                     "note": f"medians of {churned['plan']['repeats']} sequences; no writes: "
                             f"{fmt(summary['baseline_qps'])} answers/s at {fmt(summary['baseline_cpu_us'], 2)} µs; "
                             f"{summary.get('stolen', 0)} of {summary.get('windows', 0)} windows stolen by the "
                             "hypervisor (steal >= 10 %), left out"})
    if "skipped" in churned:
        rows.append({"target": "no stall under registry writes", "goal": f">= {churn.TARGET_RATIO}",
                     "value": "not measured", "met": None, "note": churned["skipped"]})
    scale = results.get("scale", {})
    if scale:
        goal = f"< {TARGETS['scale_load_s']:g} s"
        rows.append({"target": f"scale: {scale.get('services', 0):,} services + {scale.get('pods', 0):,} pods, start-up to first answer from manifests",
                     "goal": goal, "value": fmt(scale.get("load_s"), 1, " s"),
                     "met": scale.get("load_s") is not None and scale["load_s"] < TARGETS["scale_load_s"], "note": scale.get("note") or ""})
        rows.append({"target": "same cluster: start-up to first answer from the durable store (no manifests)",
                     "goal": goal, "value": fmt(scale.get("store_load_s"), 1, " s"),
                     "met": scale.get("store_load_s") is not None and scale["store_load_s"] < TARGETS["scale_load_s"],
                     "note": f"{fmt(scale.get('store_load_cpu_s'), 1)} s CPU"})
        if "qps_ratio" in scale:
            met = scale["qps_ratio"] >= TARGETS["throughput_ratio"]
            note = (f"closed loop (no rate search), the scale cluster's own {fmt(scale.get('query_count'))}-query mix: "
                    f"{fmt(scale['throughput']['kdns']['qps'])} vs {fmt(scale['throughput']['knot']['qps'])} answers/s, "
                    f"CPU per answer {fmt(scale['throughput']['kdns']['cpu_us_per_query'], 2)} vs "
                    f"{fmt(scale['throughput']['knot']['cpu_us_per_query'], 2)} µs")
            if scale["throughput"]["knot"].get("client_bound") or scale["throughput"]["kdns"].get("client_bound"):
                met = (scale.get("cpu_ratio") or 0) >= TARGETS["throughput_ratio"]
                note += f"; a server core was not full, so judged by answers per CPU-second: {fmt(scale.get('cpu_ratio'), 2)}"
            rows.append({"target": "scale: cluster answers, kdns/Knot, same cluster and queries", "goal": f">= {TARGETS['throughput_ratio']}",
                         "value": fmt(scale["qps_ratio"], 2), "met": met, "note": note})
        rows.append({"target": "scale: peak RSS (VmHWM)", "goal": f"< {TARGETS['scale_rss_mib']:g} MiB", "value": fmt(scale.get("peak_rss_mib"), 0, " MiB"),
                     "met": scale.get("peak_rss_mib") is not None and scale["peak_rss_mib"] < TARGETS["scale_rss_mib"]
                     and scale.get("load_s") is not None, "note": ""})
    forward = results.get("forward", {})
    if "skipped" in forward:
        rows.append({"target": "forwarded names from the cache / cluster answers (max qps)", "goal": ">= 0.8",
                     "value": "not measured", "met": None, "note": forward["skipped"]})
    elif forward:
        ratio = forward.get("ratio_to_cluster")
        fc = forward["throughput"].get("per_cpu_second")
        kc = k["throughput"].get("per_cpu_second") if k else None
        cpu_ratio = fc / kc if fc and kc else None
        met, note = ratio is not None and ratio >= TARGETS["forward_ratio"], ""
        bound = forward["throughput"].get("client_bound") or (k and k["throughput"].get("client_bound"))
        if bound and cpu_ratio is not None:
            met = cpu_ratio >= TARGETS["forward_ratio"]
            note = (f"a max here is dnsperf's (a server core was not full): judged by answers per CPU-second, "
                    f"{fmt(cpu_ratio, 2)}")
        rows.append({"target": "forwarded names from the cache / cluster answers (max qps)", "goal": ">= 0.8",
                     "value": f"{fmt(ratio, 3)} ({fmt(forward['throughput']['max_rate'])} qps)", "met": met, "note": note})
        if cpu_ratio is not None:
            rows.append({"target": "(context) answers per CPU-second, forwarded from the cache / cluster", "goal": "—",
                         "value": f"{fmt(cpu_ratio, 3)} ({fmt(fc)} / {fmt(kc)})", "met": None,
                         "note": "CPU cost per answer, less sensitive to the shared machine than max qps"})
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> str:
    m = results["machine"]
    lines = [
        "# kdns beside Knot DNS: benchmark results",
        "",
        (f"**{m['date_utc']}**, mode `{results['mode']}`; {m['cpu_model']}, {m['cpus_online']} CPUs, "
        f"{m['memory_gib']} GiB, {m['os']} (kernel {m['kernel']}), load average at start {' '.join(m['loadavg_start'])}; "
        f"Python {m['python']} ({m['kdns_event_loop']}), kdns `{m['kdns_commit']}` (sources "
        f"`{m.get('kdns_sources', '?')}`), {m['knot']}, {m['dnsperf']}. "
        f"{results['pinning']}."),
        "",
        (f"Cluster: {results['cluster']['namespaces']} namespaces, {results['cluster']['services_clusterip']:,} ClusterIP services "
        f"(named ports, SRV), {results['cluster']['services_headless']} headless services with "
        f"{results['cluster']['spec']['headless_pods']} pods each, {results['cluster']['records']:,} records; "
        f"{results['cluster']['query_count']:,} queries in the file, realistic mix (see bench/README.md)."),
        "",
        "## Targets",
        "",
        "| target | goal | measured | met | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['target']} | {row['goal']} | {row['value']} | {met} | {row['note']} |")
    lines += [
        "",
        "## Throughput (UDP, one server core)",
        "",
        ("| server | max qps, loss < 0.1 % | answered/s there | loss there | unlimited-rate qps | CPU per query at max | "
        "server CPU use at max | its core busy (others' share: server core / dnsperf core) | answers per CPU-second | peak RSS "
        "| start-up to first answer |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.get("servers", {}).items():
        th = s["throughput"]
        lines.append(
            f"| {name} | {fmt(th['max_rate'])} | {fmt(th['max']['qps'])} | {fmt(th['max']['loss_pct'], 3)} % | "
            f"{fmt(th['unlimited']['qps'])} | {fmt(th['max']['cpu_us_per_query'], 1)} µs | "
            f"{fmt(100 * (th['max']['server_cpu_util'] or 0), 0)} % | "
            f"{fmt(100 * (th['max']['server_core_busy'] or 0), 0)} % ({fmt(100 * (th['max']['server_core_others'] or 0), 0)} % / "
            f"{fmt(100 * (th['max'].get('client_core_others') or 0), 0)} %)"
            f"{' client-bound' if th.get('client_bound') else ''}"
            f"{' disturbed' if th['max'].get('disturbed_runs') else ''} | "
            f"{fmt(th.get('per_cpu_second'))} | "
            f"{fmt(s['peak_rss_mib'], 1)} MiB | {fmt(s['startup_s'], 2)} s |")
    lines += [
        "",
        "## Latency at fixed loads (dnsperf -v, per-answer latency; median of the runs)",
        "",
        ("| server | offered qps | sent (of offered) | answered/s | loss | p50 | p90 | p99 | p99.9 | max | CPU per query "
        "| others' share: server core / dnsperf core |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.get("servers", {}).items():
        for x in s["latency"]:
            lat = x["latency_ms"]
            lines.append(
                f"| {name} | {x['load']:,} | {fmt(100 * (x['sent_ratio'] or 0), 0)} % | {fmt(x['qps'])} | "
                f"{fmt(x['loss_pct'], 3)} % | {fmt(lat['p50'], 3)} ms | "
                f"{fmt(lat['p90'], 3)} ms | {fmt(lat['p99'], 3)} ms | {fmt(lat['p99.9'], 3)} ms | {fmt(lat['max'], 3)} ms | "
                f"{fmt(x['cpu_us_per_query'], 1)} µs | {fmt(100 * (x['server_core_others'] or 0), 0)} % / "
                f"{fmt(100 * (x.get('client_core_others') or 0), 0)} %"
                f"{' (disturbed)' if x.get('disturbed_runs') else ''} |")
    scale = results.get("scale")
    if scale:
        lines += ["", "## Scale (kdns)", "",
                  f"{scale['services']:,} services and {scale['pods']:,} pods in {scale['namespaces']} namespaces "
                  f"({scale['yaml_mib']} MiB of YAML): first answer ({scale['probe']}) "
                  f"{fmt(scale['load_s'], 2)} s after exec, {fmt(scale['load_cpu_s'], 1)} s CPU, "
                  f"peak RSS {fmt(scale['peak_rss_mib'], 0)} MiB; from the durable store (no manifests) "
                  f"{fmt(scale.get('store_load_s'), 2)} s, {fmt(scale.get('store_load_cpu_s'), 1)} s CPU."
                  + (f" {scale['note']}" if scale.get("note") else "")]
        for who, t in scale.get("throughput", {}).items():
            lines.append(f"* {who}, closed-loop dnsperf with the scale cluster's queries: {fmt(t['qps'])} answers/s, "
                         f"loss {fmt(t['loss_pct'], 3)} %, {fmt(t['cpu_us_per_query'], 2)} µs CPU per answer"
                         f"{' (client-bound)' if t.get('client_bound') else ''}.")
    forward = results.get("forward", {})
    lines += ["", "## Forwarded names from the cache (kdns)", ""]
    if "skipped" in forward:
        lines.append(f"Not measured: {forward['skipped']}")
    elif forward:
        th = forward["throughput"]
        lat = forward["latency"][0]
        lines.append(f"{forward['names']:,} names of {gen.FORWARD_ZONE} (TTL {gen.FORWARD_TTL} s) from Knot on "
                     f"{UPSTREAM_ADDRESS}, warmed once: max {fmt(th['max_rate'])} qps with < 0.1 % loss "
                     f"({fmt(forward['ratio_to_cluster'], 3)} x cluster answers), unlimited {fmt(th['unlimited']['qps'])} qps, "
                     f"{fmt(th['max']['cpu_us_per_query'], 1)} µs CPU/query; at {lat['load']:,} qps p50 "
                     f"{fmt(lat['latency_ms']['p50'], 3)} ms, p99 {fmt(lat['latency_ms']['p99'], 3)} ms; "
                     f"upstream CPU during the measurement {fmt(forward['upstream_cpu_s_during_measurement'], 2)} s.")
    lines += ["", "## Registry change to visible answer (kdns)", ""]
    for key, who in (("change", "one process"),
                     ("change_workers", (f"`--workers {CHANGE_WORKERS}` on the one core, asked from "
                                        f"{WORKER_SOCKETS} source ports until all see it"))):
        change = results.get(key, {})
        if "skipped" in change:
            lines.append(f"* {who}: not measured: {change['skipped']}")
        elif change:
            lat = change["latency_ms"]
            after = change.get("after_commit_ms", {})
            lines.append(f"* {who}: {change['changes']} readiness flips by PUT under {change['background_load_qps']:,} qps "
                         f"(background loss {fmt(change['background_loss_pct'], 3)} %): from before the PUT p50 "
                         f"{fmt(lat['p50'], 2)} ms, p99 {fmt(lat['p99'], 2)} ms, max {fmt(lat['max'], 2)} ms; from its "
                         f"reply (committed) p50 {fmt(after.get('p50'), 2)} ms, p99 {fmt(after.get('p99'), 2)} ms; "
                         f"{change['error_count']} errors.")
    workers = results.get("workers", {})
    if workers:
        lines += ["", "## `--workers` on the one core (kdns)", ""]
        if "skipped" in workers:
            lines.append(f"Not measured: {workers['skipped']}")
        else:
            lines += [(f"Closed-loop dnsperf from {workers['clients']} sockets (source ports), "
                       f"{workers['workers_1']['runs'][0]['seconds']:g} s runs, medians; every kdns process pinned "
                       "to the server core, so this shows what several processes cost and how the kernel's "
                       "SO_REUSEPORT hash shares the load among them, not a throughput gain (that needs a core per "
                       "worker, and the second core is dnsperf's)."), "",
                      "| processes | answers/s | loss | CPU per answer | CPU share by process |",
                      "| --- | ---: | ---: | ---: | --- |"]
            for key in ("workers_1", f"workers_{workers['workers']}"):
                w = workers.get(key)
                if w:
                    lines.append(f"| {key.split('_')[1]} | {fmt(w['qps'])} | {fmt(w['loss_pct'], 3)} % | "
                                 f"{fmt(w['cpu_us_per_query'], 2)} µs | "
                                 f"{' / '.join(fmt(x, 1) for x in w['cpu_share_pct'])} % |")
    churned = results.get("churn", {})
    if churned:
        lines += ["", "## Answers while the registry is written (kdns, bench/churn.py)", ""]
        lines += ([f"Not measured: {churned['skipped']}"] if "skipped" in churned else churn.markdown(churned))
    sanity = results.get("sanity", {})
    lines += ["", "## Sanity check", "",
              (f"{sanity.get('queries', 0)} queries asked of both servers (rcode, AA, answer, authority and additional "
              f"sections with TTLs; SOA serials excepted) and checked against the generator: "
              f"{len(sanity.get('mismatches', []))} mismatches, {len(sanity.get('unanswered', []))} unanswered.")]
    for line in sanity.get("mismatches", [])[:20] + sanity.get("unanswered", [])[:10]:
        lines.append(f"* {line}")
    lines += ["", "## Notes", ""] + [f"* {note}" for note in results["notes"]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(results: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    servers = results.get("servers", {})
    if not servers:
        return "no server was measured: no plot"
    colors = {"kdns": "#3b6fb6", "knot": "#d9822b"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.4), gridspec_kw={"width_ratios": [1, 1.6]})
    names = [n for n in ("kdns", "knot") if n in servers]
    groups = ["max, loss < 0.1 %", "unlimited rate\n(closed loop)"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        th = servers[name]["throughput"]
        values = [th["max_rate"], th["unlimited"]["qps"] or 0]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        bars = left.bar(xs, values, width, label=name, color=colors.get(name))
        for bar, value in zip(bars, values, strict=True):
            left.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    forward = results.get("forward", {})
    if forward and "throughput" in forward:
        value = forward["throughput"]["max_rate"]
        left.bar([len(groups)], [value], width, color=colors["kdns"], hatch="//", label="kdns, forwarded names from cache")
        left.annotate(f"{value:,.0f}", (len(groups), value), ha="center", va="bottom", fontsize=8)
        groups.append("forwarded,\nfrom the cache")
    left.set_xticks(range(len(groups)), groups)
    left.set_yscale("log")
    tallest = max([servers[n]["throughput"]["max_rate"] for n in names]
                  + [servers[n]["throughput"]["unlimited"]["qps"] or 0 for n in names])
    left.set_ylim(1000, max(tallest, 1000) * 3)  # room for the labels under the title
    left.set_ylabel("queries per second (log scale)")
    left.set_title("Throughput, one server core (UDP)")
    left.legend(fontsize=8)
    loads = [x["load"] for x in servers[names[0]]["latency"]]
    pcts = ["p50", "p99", "p99.9"]
    slots = [(load, p) for load in loads for p in pcts]
    for i, name in enumerate(names):
        by_load = {x["load"]: x for x in servers[name]["latency"]}
        values, hatches = [], []
        for load, p in slots:
            x = by_load[load]
            values.append(x["latency_ms"][p] or 0)
            degraded = (x["loss_pct"] or 0) >= LOSS_LIMIT_PCT or (x["sent_ratio"] or 0) < SENT_RATIO_MIN
            hatches.append("xx" if degraded else "")
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(slots))]
        bars = right.bar(xs, values, width, label=name, color=colors.get(name))
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    for j in range(1, len(loads)):
        right.axvline(j * len(pcts) - 0.5, color="lightgrey", linewidth=1)
    right.set_xticks(range(len(slots)), [f"{p}\n{load:,} qps" for load, p in slots], fontsize=7)
    right.set_yscale("log")
    right.set_ylabel("latency, ms (log scale)")
    right.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    right.set_title("Latency at fixed offered loads\n(crossed: offered load not reached or loss >= 0.1 %)", fontsize=10)
    right.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"kdns beside Knot DNS {m['knot'].split()[-1] if m['knot'] else ''} — {m['date_utc']}, "
                 f"{m['cpu_model']}, {m['cpus_online']} CPUs ({results['mode']} run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


README_START = "<!-- results:start -->"


README_END = "<!-- results:end -->"


def update_readme(results: dict[str, Any], markdown: str, out: Path) -> bool:
    """Rewrite the results section of bench/README.md, with the plot copied beside it as
    bench/results.png (bench/out/ is git-ignored; the README's record must not be)."""
    readme = HERE / "README.md"
    if not readme.exists():
        return False
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    image = ""
    if (out / "results.png").exists():
        shutil.copyfile(out / "results.png", HERE / "results.png")
        image = "![throughput and latency, kdns beside Knot](results.png)\n\n"
    if (out / "churn.png").exists():
        shutil.copyfile(out / "churn.png", HERE / "churn.png")
        image += "![answers per second while the registry is written](churn.png)\n\n"
    body = markdown.split("\n", 2)[2]  # without the title line
    body = body.replace("\n## ", "\n### ")
    rel = os.path.relpath(out, HERE)
    block = (f"{README_START}\n_Written by `python bench/run.py --readme` ({results['mode']} run); the plot is "
             f"`results.png` beside this file, all figures in `{rel}/results.json`._\n\n{image}{body}\n{README_END}")
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + block + text[end:])
    return True
