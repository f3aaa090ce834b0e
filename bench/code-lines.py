#!/usr/bin/env python3
"""The code a benchmark runs, per function: distinct 64-byte lines executed and instructions.

    valgrind --tool=callgrind --dump-instr=yes --toggle-collect='*Policy*run*' \\
        --callgrind-out-file=cg.out target/release/deps/axum-<hash> --bench parts::resolve \\
        --sample-count 40 --sample-size 100
    python3 bench/code-lines.py cg.out

A layer's cost in the axum benchmark follows how much code it runs (its instruction-cache
footprint) more than how many instructions (BENCHMARKS.md, the axum section): this counts
the first. Instructions are each function's own (exclusive); divide by the calls (here
40 x 100 + 1 warm-up) for a per-call figure. Reads callgrind's compressed names and
relative positions ("positions: instr line").
"""
import collections
import re
import sys

POS = re.compile(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+\S+\s+(\d+)")
NAME = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    names, fn, addr, after_call = {}, None, 0, False
    lines = collections.defaultdict(set)
    instrs = collections.Counter()
    with open(sys.argv[1]) as f:
        for row in f:
            m = NAME.match(row)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if m.group(1) == "fn":
                    fn = names[m.group(2)]
                continue
            if row.startswith("calls="):
                # The next cost row is the call's inclusive cost, at the call site.
                after_call = True
                continue
            m = POS.match(row)
            if not m:
                continue
            pos = m.group(1)
            if pos.startswith("0x"):
                addr = int(pos, 16)
            elif pos != "*":
                addr += int(pos)
            if after_call:
                after_call = False
                continue
            if fn:
                lines[fn].add(addr >> 6)
                instrs[fn] += int(m.group(2))
    every = set()
    for name in sorted(lines, key=lambda k: -len(lines[k])):
        every |= lines[name]
        print(f"{len(lines[name]):5d} lines {instrs[name]:12d} instructions  {name[:110]}")
    print(f"{len(every):5d} lines in all")


main()
