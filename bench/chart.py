#!/usr/bin/env python3
"""Draw bench/compare.py results as a PNG: CPU per 1000 calls and failed calls against
offered rate, Kamailio and Starling side by side, one column per mode (stateless,
stateful) found in the given JSON files. Files of the same mode are merged per server
and rate (a later file's step replaces an earlier one's at the same rate), so an
extension run at higher rates adds to the main run; the probe figures come from the
last file of the mode that has them.

    python3 bench/chart.py -o docs/bench.png bench/results/compare-A.json bench/results/compare-B.json

Needs matplotlib (`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLORS = {"kamailio": "#d62728", "starling": "#1f77b4"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("results", nargs="+", help="compare-<UTC>.json files")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/chart.py: matplotlib is not installed; run `pip install matplotlib` "
              "(or set CHART=0 for compare.sh)", file=sys.stderr)
        return 3

    docs: dict[str, dict] = {}
    for name in args.results:
        doc = json.loads(Path(name).read_text())
        mode = doc.get("mode", "stateless")
        if mode not in docs:
            docs[mode] = doc
            continue
        merged = docs[mode]
        merged["started"] = min(merged["started"], doc["started"])
        for r in doc["results"]:
            old = next((m for m in merged["results"] if m["server"] == r["server"]), None)
            if old is None:
                merged["results"].append(r)
                continue
            steps = {s["rate"]: s for s in old["steps"]}
            steps.update({s["rate"]: s for s in r["steps"]})
            old["steps"] = [steps[k] for k in sorted(steps)]
            if "probe_step" in r:
                old["probe_step"] = r["probe_step"]
                merged["probe_rate"] = doc.get("probe_rate")
    modes = [m for m in ("stateless", "stateful") if m in docs]
    if not modes:
        print("bench/chart.py: no results", file=sys.stderr)
        return 2

    fig, axes = plt.subplots(2, len(modes), figsize=(6.2 * len(modes), 7.5), squeeze=False, sharex="col")
    width = 0.38
    for col, mode in enumerate(modes):
        doc = docs[mode]
        servers = [r for r in doc["results"] if r.get("steps")]
        rates = sorted({s["rate"] for r in servers for s in r["steps"]})
        xs = {rate: i for i, rate in enumerate(rates)}
        cpu_ax, fail_ax = axes[0][col], axes[1][col]
        for k, r in enumerate(servers):
            name = r["server"]
            offset = (k - (len(servers) - 1) / 2) * width
            steps = sorted(r["steps"], key=lambda s: s["rate"])
            pos = [xs[s["rate"]] + offset for s in steps]
            cpu = [(s["server_cpu_s_per_1000_calls"] or 0) * 1000 for s in steps]  # ms per 1000 calls
            bars = cpu_ax.bar(pos, cpu, width, color=COLORS.get(name), label=name)
            for bar, s in zip(bars, steps):
                mark = "" if s["passed"] else " FAIL"
                mark += " *" if s.get("contended") else ""
                cpu_ax.annotate(f"{bar.get_height():.0f}{mark}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
            # Failed or never completed: SIPp can abort under overload (exit status != 0) with few "failed" calls.
            fails = [max(s["failed"], s["calls"] - s["successful"]) for s in steps]
            bars = fail_ax.bar(pos, fails, width, color=COLORS.get(name), label=name)
            for bar, s, n in zip(bars, steps, fails):
                label = f"{n}/{s['retransmissions']}" + ("\nSIPp abort" if s.get("exit") else "")
                fail_ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                 ha="center", va="bottom", fontsize=7)
        per = {r["server"]: {s["rate"]: s["server_cpu_s_per_1000_calls"] for s in r["steps"]} for r in servers}
        ratios = {f"cpu_per_1000_calls@{rate}": round(per["starling"][rate] / per["kamailio"][rate], 2)
                  for rate in rates if per.get("kamailio", {}).get(rate) and per.get("starling", {}).get(rate)}
        cpu_ax.set_title(f"{mode} ({Path(doc['script']).name}), {doc['duration_s']} s steps, "
                         f"Kamailio {doc.get('children', '?')} children, Starling "
                         f"{doc.get('starling_workers', doc.get('children', '?'))} workers\n{doc['started'][:16]} UTC", fontsize=9)
        cpu_ax.set_ylabel("server CPU ms per 1000 calls")
        fail_ax.set_ylabel("failed + uncompleted calls\n(label: that/retransmissions)")
        fail_ax.set_xlabel("offered SIPp calls/s")
        fail_ax.set_xticks(range(len(rates)))
        fail_ax.set_xticklabels([str(r) for r in rates])
        fail_ax.set_ylim(bottom=0, top=max(1, fail_ax.get_ylim()[1]) * 1.6)
        cpu_ax.set_ylim(top=cpu_ax.get_ylim()[1] * 1.3)
        cpu_ax.legend(fontsize=8, loc="upper right")
        cpu_ratio = [f"{k.split('@')[1]}: {v}" for k, v in ratios.items() if k.startswith("cpu_per_1000_calls@")]
        if cpu_ratio:
            cpu_ax.text(0.01, 0.98, "Starling/Kamailio CPU per call\n" + ", ".join(cpu_ratio), transform=cpu_ax.transAxes,
                        va="top", fontsize=7)
        probes = {r["server"]: r["probe_step"]["probe"] for r in doc["results"] if "probe_step" in r}
        if probes:
            lines = [f"probe at {doc.get('probe_rate')} cps, p50/p99 µs:"]
            for name, p in probes.items():
                parts = [f"{key} {p[key]['p50_us']:.0f}/{p[key]['p99_us']:.0f}" for key in ("invite_100", "bye_200")
                         if key in p and (key != "invite_100" or mode == "stateful")]
                lines.append(f"{name}: " + ", ".join(parts))
            fail_ax.text(0.01, 0.98, "\n".join(lines), transform=fail_ax.transAxes, va="top", fontsize=7)
    fig.suptitle("Kamailio 5.6 vs Starling, same KEMI Lua script and SIPp load (127.0.0.1, 2 vCPU)", fontsize=10)
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"Chart: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
