#!/usr/bin/env bash
# The cost of swapping trust sets under load: `trueip serve --strategy cloudfront` with the
# whole AWS ip-ranges.json (every prefix counted as CLOUDFRONT_ORIGIN_FACING: 13,344
# prefixes) as its cached list, under wrk, three ways per round:
#
#   steady   no swap;
#   sighup   SIGHUP every $HUP_EVERY seconds: each one reads the config and the cache again,
#            builds the whole state (13,344-prefix trust sets) and swaps it;
#   refresh  [ranges] refresh: the list is due $REFRESH_AFTER seconds into the run, is
#            fetched from a loopback mirror, checked, written to the cache, and the state
#            rebuilt and swapped, on the gateway's refresh thread.
#
#   bash bench/ranges-swap.sh                      # builds target/release/trueip first
#   ROUNDS=5 DURATION=30s bash bench/ranges-swap.sh
#   TRUEIP_BIN=/path/to/trueip bash bench/ranges-swap.sh
#
# Reports p50/p99 and errors per way (median of the rounds' p99) and the build-and-swap
# times the gateway logged. The gateway runs on the last CPU, wrk and the mirror on the
# others. Needs: wrk, python3, taskset, cargo; the real AWS file in $RANGES_FIXTURES.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-50}
HUP_EVERY=${HUP_EVERY:-0.5}
REFRESH_AFTER=${REFRESH_AFTER:-5}
RANGES_FIXTURES=${RANGES_FIXTURES:-/work/shared/ranges}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/trueip-ranges-bench.XXXXXX)}
PORT=${PORT:-18090}
MIRROR_PORT=${MIRROR_PORT:-18091}

for tool in wrk python3 taskset; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
if [[ -z "${TRUEIP_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p trueip-cli)
    TRUEIP_BIN=$ROOT/target/release/trueip
fi
LAST_CPU=$(( $(nproc) - 1 ))
OTHER_CPUS=0-$(( LAST_CPU > 0 ? LAST_CPU - 1 : 0 ))

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# The whole list as CloudFront origin-facing ranges.
mkdir -p "$OUT/mirror"
python3 - "$RANGES_FIXTURES/aws-ip-ranges.json" "$OUT/mirror/all.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for p in doc["prefixes"] + doc["ipv6_prefixes"]:
    p["service"] = "CLOUDFRONT_ORIGIN_FACING"
json.dump(doc, open(sys.argv[2], "w"))
PY
taskset -c "$OTHER_CPUS" python3 -m http.server "$MIRROR_PORT" --bind 127.0.0.1 \
    -d "$OUT/mirror" >"$OUT/mirror.log" 2>&1 &
PIDS+=($!)
sleep 0.5

fill_cache() {  # fill_cache DIR [BACKDATE_SECONDS]
    rm -rf "$1"
    "$TRUEIP_BIN" ranges update cloudfront --ranges-dir "$1" \
        --from "cloudfront=http://127.0.0.1:$MIRROR_PORT/all.json" >/dev/null
    if [[ -n "${2:-}" ]]; then
        python3 - "$1/cloudfront.ranges" "$2" <<'PY'
import json, sys
path, back = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
line, rest = data.split(b"\n", 1)
meta = json.loads(line)
meta["fetched_at_unix"] -= back
open(path, "wb").write(json.dumps(meta).encode() + b"\n" + rest)
PY
    fi
}

start_gateway() {  # start_gateway CONFIG LOG
    taskset -c "$LAST_CPU" "$TRUEIP_BIN" serve --config "$1" >"$2" 2>&1 &
    GATEWAY=$!
    PIDS+=("$GATEWAY")
    for _ in $(seq 100); do
        grep -q "listening on" "$2" && return 0
        sleep 0.1
    done
    echo "the gateway did not start: $(cat "$2")" >&2
    exit 1
}

stop_gateway() {
    kill "$GATEWAY" 2>/dev/null || true
    wait "$GATEWAY" 2>/dev/null || true
}

run_wrk() {  # run_wrk OUTFILE
    taskset -c "$OTHER_CPUS" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
        "http://127.0.0.1:$PORT/json" >"$1"
}

config() {  # config DIR REFRESH
    cat <<TOML
[client_ip]
strategy = "cloudfront"
[[listen]]
address = "127.0.0.1:$PORT"
[limits]
workers = 1
[log]
access_log = false
[ranges]
dir = "$1"
$( [[ -n "$2" ]] && echo "refresh = \"$2\"" )
[ranges.from]
cloudfront = "http://127.0.0.1:$MIRROR_PORT/all.json"
TOML
}

for round in $(seq "$ROUNDS"); do
    # steady
    fill_cache "$OUT/cache"
    config "$OUT/cache" "" >"$OUT/steady.toml"
    start_gateway "$OUT/steady.toml" "$OUT/steady-$round.log"
    run_wrk "$OUT/wrk-steady-$round.txt"
    stop_gateway

    # sighup
    config "$OUT/cache" "" >"$OUT/sighup.toml"
    start_gateway "$OUT/sighup.toml" "$OUT/sighup-$round.log"
    run_wrk "$OUT/wrk-sighup-$round.txt" &
    WRK=$!
    secs=${DURATION%s}
    end=$(( $(date +%s) + secs - 1 ))
    while (( $(date +%s) < end )); do
        sleep "$HUP_EVERY"
        kill -HUP "$GATEWAY"
    done
    wait "$WRK"
    stop_gateway

    # refresh: due REFRESH_AFTER seconds after the start (refresh = 60s, fetched 60-N s ago)
    fill_cache "$OUT/cache" $(( 60 - REFRESH_AFTER ))
    config "$OUT/cache" "60s" >"$OUT/refresh.toml"
    start_gateway "$OUT/refresh.toml" "$OUT/refresh-$round.log"
    run_wrk "$OUT/wrk-refresh-$round.txt"
    stop_gateway
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import re, statistics, sys, glob
out, rounds = sys.argv[1], int(sys.argv[2])
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def wrk(path):
    t = open(path).read()
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", t)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    e = sum(map(int, errs.groups())) if errs else 0
    e += int(non2xx.group(1)) if non2xx else 0
    return ms(*p50.groups()), ms(*p99.groups()), float(rps.group(1)), e
def swaps(pattern, what):
    times = []
    for path in glob.glob(f"{out}/{pattern}"):
        for m in re.finditer(what + r" in ([\d.]+)(µs|us|ms|s)\)", open(path).read()):
            v, u = m.groups()
            times.append(ms(v, "us" if u in ("µs", "us") else u))
    return times
rows = {}
print("| way | p50 ms | p99 ms (median) | p99 per round | req/s (median) | errors | p99 / steady |")
print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
for way in ("steady", "sighup", "refresh"):
    r = [wrk(f"{out}/wrk-{way}-{i}.txt") for i in range(1, rounds + 1)]
    rows[way] = statistics.median(x[1] for x in r)
    print(f"| {way} | {statistics.median(x[0] for x in r):.2f} | {rows[way]:.2f} | "
          f"{[round(x[1], 2) for x in r]} | {statistics.median(x[2] for x in r):,.0f} | "
          f"{sum(x[3] for x in r)} | {rows[way] / rows['steady']:.2f}x |")
hup = swaps("sighup-*.log", "built and swapped")
ref = swaps("refresh-*.log", "built and swapped")
for name, t in (("SIGHUP (read config + cache, build, swap)", hup), ("refresh (after fetch, check, cache write: build, swap)", ref)):
    if t:
        print(f"\n{name}: {len(t)} swaps, median {statistics.median(t):.1f} ms, max {max(t):.1f} ms")
    else:
        print(f"\n{name}: no swap logged")
PY
echo
echo "logs and wrk output: $OUT"
