#!/usr/bin/env python3
"""The code one request runs: distinct 64-byte code lines and instructions per request.

    B=target/release/deps/axum-<hash>
    for n in 20 40; do valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.$n \\
        $B --bench around_the_router::trueip --sample-count $n --sample-size 100; done
    python3 bench/request-lines.py cg.20 cg.40 2000 [-v]

The two profiles differ only in how many requests ran (here 2,000 more in the second): an
instruction counts as the request's when it ran at least once per extra request, so divan's
set-up, the policy's construction and the warm-up drop out. Prints the distinct lines those
instructions sit on (what the request asks of a 32 KiB L1 instruction cache: 512 lines)
and the instructions per request; with -v, per function.
"""
import collections
import re
import sys

POS = re.compile(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+\S+\s+(\d+)")
NAME = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def load(path):
    """{address: instructions executed there}, {address: function}."""
    names, fn, addr, after_call = {}, None, 0, False
    counts, owner = collections.Counter(), {}
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
            counts[addr] += int(m.group(2))
            owner[addr] = fn
    return counts, owner


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    fewer, _ = load(sys.argv[1])
    more, owner = load(sys.argv[2])
    extra = int(sys.argv[3])
    per_fn_lines, per_fn_instrs = collections.defaultdict(set), collections.Counter()
    for addr, count in more.items():
        grew = count - fewer.get(addr, 0)
        if grew >= extra * 0.9:
            per_fn_lines[owner[addr]].add(addr >> 6)
            per_fn_instrs[owner[addr]] += grew
    every = set().union(*per_fn_lines.values()) if per_fn_lines else set()
    if len(sys.argv) == 5:
        for name in sorted(per_fn_lines, key=lambda k: -len(per_fn_lines[k])):
            print(f"{len(per_fn_lines[name]):5d} lines {per_fn_instrs[name] / extra:9.1f} instructions  {name[:100]}")
    total = sum(per_fn_instrs.values()) / extra
    print(f"{len(every):5d} lines, {total:.0f} instructions per request")


main()
