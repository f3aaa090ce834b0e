#!/usr/bin/env python3
"""The code a benchmark runs: distinct 64-byte code lines executed, and instructions.

One profile, per function:

    valgrind --tool=callgrind --dump-instr=yes --toggle-collect='*Policy*run*' \\
        --callgrind-out-file=cg.out target/release/deps/axum-<hash> --bench parts::resolve \\
        --sample-count 40 --sample-size 100
    python3 bench/code-lines.py cg.out

Instructions are each function's own (exclusive); divide by the calls (here 40 x 100 + 1
warm-up) for a per-call figure.

Two profiles, per request:

    B=target/release/deps/axum-<hash>
    for n in 20 40; do valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.$n \\
        $B --bench around_the_router::trueip --sample-count $n --sample-size 100; done
    python3 bench/code-lines.py cg.20 cg.40 2000 [-v]

The two profiles differ only in how many requests ran (here 2,000 more in the second): an
instruction counts as the request's when it ran at least once per extra request, so divan's
set-up, the policy's construction and the warm-up drop out. Prints the distinct lines those
instructions sit on (what the request asks of a 32 KiB L1 instruction cache: 512 lines) and
the instructions per request; with -v, per function.

A layer's cost in the axum benchmark follows how much code it runs (its instruction-cache
footprint) more than how many instructions (BENCHMARKS.md, the axum section): this counts
the first. Reads callgrind's compressed names and relative positions ("positions: instr line").
"""
import collections
import re
import sys

POS = re.compile(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+\S+\s+(\d+)")
NAME = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def load(path):
    """{(function, address): instructions executed there}. An address is kept apart per
    function, since callgrind may list one under several."""
    names, fn, addr, after_call = {}, None, 0, False
    counts = collections.Counter()
    with open(path) as f:
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
                counts[(fn, addr)] += int(m.group(2))
    return counts


def per_function(counts, keep=lambda count: True, scale=1):
    """{function: set of code lines}, {function: instructions / scale}, over kept counts."""
    lines, instrs = collections.defaultdict(set), collections.Counter()
    for (fn, addr), count in counts.items():
        if keep(count):
            lines[fn].add(addr >> 6)
            instrs[fn] += count / scale
    return lines, instrs


def report(lines, instrs, fmt):
    for name in sorted(lines, key=lambda k: -len(lines[k])):
        print(fmt.format(len(lines[name]), instrs[name], name[:100]))


def main():
    args = sys.argv[1:]
    if len(args) == 1:
        lines, instrs = per_function(load(args[0]))
        report(lines, instrs, "{:5d} lines {:12.0f} instructions  {}")
        print(f"{len(set().union(*lines.values()) if lines else set()):5d} lines in all")
    elif len(args) in (3, 4):
        fewer, more, extra = load(args[0]), load(args[1]), int(args[2])
        grew = {key: count - fewer.get(key, 0) for key, count in more.items()}
        lines, instrs = per_function(grew, keep=lambda count: count >= extra * 0.9, scale=extra)
        if len(args) == 4:
            report(lines, instrs, "{:5d} lines {:9.1f} instructions  {}")
        every = set().union(*lines.values()) if lines else set()
        print(f"{len(every):5d} lines, {sum(instrs.values()):.0f} instructions per request")
    else:
        sys.exit(__doc__)


main()
