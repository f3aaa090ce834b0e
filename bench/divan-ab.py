#!/usr/bin/env python3
"""Two or more builds of one divan benchmark, side by side in one run.

    python3 bench/divan-ab.py ROUNDS FILTER BINARY...

Runs each BINARY (a bench executable, e.g. a copy of target/release/deps/axum-<hash> built
at each commit) in turn, ROUNDS times, with `--bench FILTER --sample-count 300
--sample-size 100` (FILTER '' runs every bench). Interleaving the builds spreads the load
of a shared machine over both alike. Prints, per bench and build, the median of the
rounds' medians and the lowest median, in ns.
"""
import re
import statistics
import subprocess
import sys

UNITS = {"ns": 1.0, "µs": 1e3, "ms": 1e6, "s": 1e9}


def medians(binary, flt):
    """{bench path: median ns} from one run of a divan binary."""
    args = [binary, "--bench", "--sample-count", "300", "--sample-size", "100"]
    if flt:
        args.insert(1, flt)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    found, path = {}, []
    for line in out.splitlines():
        m = re.match(r"^([│ ]*)(?:├─|╰─) (\S+)(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 3
        path = path[:depth] + [m.group(2)]
        cols = [c.strip() for c in m.group(3).split("│")]
        if len(cols) >= 3 and cols[0]:
            value, unit = cols[2].split()
            found["::".join(path)] = float(value) * UNITS[unit]
    return found


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, flt, binaries = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    runs = {}
    for _ in range(rounds):
        for b in binaries:
            for bench, ns in medians(b, flt).items():
                runs.setdefault(bench, {}).setdefault(b, []).append(ns)
    width = max(len(k) for k in runs)
    print(f"{'bench':<{width}} " + " ".join(f"{b[-24:]:>24}" for b in binaries))
    for bench, per in runs.items():
        cells = []
        for b in binaries:
            xs = per.get(b, [])
            cells.append(f"{statistics.median(xs):9.1f} (min {min(xs):7.1f})" if xs else " " * 24)
        print(f"{bench:<{width}} " + " ".join(cells))


main()
