#!/usr/bin/env python3
"""Instructions per call by function, from two callgrind files of bench/callgrind-stateful.sh (OUT=DIR):
the run of 2N calls minus the run of N calls, divided by N, so start-up and shutdown cancel out.

    OUT=/tmp/cg CALLS=150 bench/callgrind-stateful.sh .build/release/starling
    bench/callgrind-diff.py /tmp/cg/starling-150.out /tmp/cg/starling-300.out 150 [--inclusive] [--top 40]

Needs callgrind_annotate (valgrind) and `swift demangle` for readable names."""
import argparse, re, subprocess

def costs(path, inclusive):
    args = ["callgrind_annotate", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", path]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
            name = name.split(":", 1)[1] if ":" in name and not name.startswith("$") else name
            table[name] = table.get(name, 0) + int(m.group(1).replace(",", ""))
    return table

ap = argparse.ArgumentParser()
ap.add_argument("small"); ap.add_argument("large"); ap.add_argument("calls", type=int)
ap.add_argument("--inclusive", action="store_true"); ap.add_argument("--top", type=int, default=40)
a = ap.parse_args()
s, l = costs(a.small, a.inclusive), costs(a.large, a.inclusive)
rows = sorted(((l.get(k, 0) - s.get(k, 0)) / a.calls, k) for k in set(s) | set(l))
rows.reverse()
names = [k for _, k in rows[: a.top]]
try:
    dem = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names), capture_output=True,
                         text=True, check=True).stdout.splitlines()
except (OSError, subprocess.CalledProcessError):
    dem = names
total = (sum(l.values()) - sum(s.values())) / a.calls if not a.inclusive else None
if total: print(f"total (exclusive sum) {total:,.0f} instructions per call")
for (v, _), n in zip(rows[: a.top], dem):
    print(f"{v:10,.0f}  {n[:160]}")
