#!/usr/bin/env bash
# trueip serve vs nginx, side by side, on loopback, in one run.
#
#   bash bench/gateway.sh                # defaults below
#   DURATION=30s ROUNDS=5 bash bench/gateway.sh
#
# Two comparisons, each with identical wrk parameters and an X-Forwarded-For header from a
# trusted peer (every peer is on 127/8, and both sides trust 127.0.0.0/8):
#   proxy:  wrk → nginx (realip + proxy_pass, keepalive to upstream)  → upstream
#           wrk → trueip serve --upstream                             → upstream
#   whoami: wrk → nginx (realip + `return 200 "<client ip>"`)
#           wrk → trueip serve (no upstream: the built-in whoami, GET $WHOAMI_PATH)
# The upstream is a separate nginx `return 200` (one worker, keepalive) shared by both proxies.
#
# Fairness: nginx runs one worker process (`worker_processes 1`, `master_process off`), trueip
# runs with one worker thread when it has such a setting; both are pinned to the same CPU
# ($PROXY_CPU) with taskset, and wrk and the upstream to the others. Neither writes an access log.
# Runs are interleaved (nginx, trueip, nginx, trueip, ...) so drift on a shared machine hits both
# sides alike; the table reports the median round of each side and the peak RSS (VmHWM) over the
# whole run.
#
# Needs: nginx, wrk, python3, taskset (util-linux), cargo. Prints a markdown table on stdout;
# logs and raw wrk output go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}
WARMUP=${WARMUP:-2s}
WHOAMI_PATH=${WHOAMI_PATH:-/json}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/bench-gateway}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
if [ "$NCPU" -gt 1 ]; then
    OTHER_CPUS=${OTHER_CPUS:-0-$((NCPU - 2))}
else
    OTHER_CPUS=0
fi
XFF="203.0.113.7, 10.0.0.1"

for tool in nginx wrk python3 taskset cargo; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "bench/gateway.sh: $tool not found (Debian packages: nginx wrk python3 util-linux)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${TRUEIP_BIN:-}" ]; then
    TRUEIP=$TRUEIP_BIN
else
    echo "building trueip (release)..." >&2
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p trueip-cli
    TRUEIP=$TARGET_DIR/release/trueip
fi
if ! "$TRUEIP" serve --help >/dev/null 2>&1; then
    echo "bench/gateway.sh: $TRUEIP has no working 'serve' command" >&2
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid name
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "$3 exited before listening on $1; see $OUT/$3.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "$3 did not listen on $1; see $OUT/$3.log" >&2
    exit 1
}

# nginx_conf NAME SERVER_BLOCK: one worker, no master, no access log, everything under $OUT.
nginx_conf() {
    local d="$OUT/$1"
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 1000000;
$2
}
EOF
}

start() { # name cpus port cmd...
    local name=$1 cpus=$2 port=$3
    shift 3
    taskset -c "$cpus" "$@" >"$OUT/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" "$name"
    eval "PID_${name//-/_}=$pid"
}

UP_PORT=$(free_port)
nginx_conf upstream "    server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"hello from upstream\\n\"; } }"
start upstream "$OTHER_CPUS" "$UP_PORT" "$NGINX" -p "$OUT/upstream" -c "$OUT/upstream/nginx.conf" -e "$OUT/upstream/error.log"

REALIP="set_real_ip_from 127.0.0.0/8; set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; real_ip_recursive on;"

NGINX_PROXY_PORT=$(free_port)
nginx_conf nginx-proxy "    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PROXY_PORT;
        $REALIP
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }"
start nginx-proxy "$PROXY_CPU" "$NGINX_PROXY_PORT" "$NGINX" -p "$OUT/nginx-proxy" -c "$OUT/nginx-proxy/nginx.conf" -e "$OUT/nginx-proxy/error.log"

NGINX_WHOAMI_PORT=$(free_port)
nginx_conf nginx-whoami "    server {
        listen 127.0.0.1:$NGINX_WHOAMI_PORT;
        $REALIP
        location / { default_type application/json; return 200 '{\"client_ip\":\"\$remote_addr\",\"direct_ip\":\"\$realip_remote_addr\"}\n'; }
    }"
start nginx-whoami "$PROXY_CPU" "$NGINX_WHOAMI_PORT" "$NGINX" -p "$OUT/nginx-whoami" -c "$OUT/nginx-whoami/nginx.conf" -e "$OUT/nginx-whoami/error.log"

# trueip: one tokio worker thread (TOKIO_WORKER_THREADS, read by the runtime builder when the
# program sets no count), no access log (nginx has none either), diagnostics at warn.
cat >"$OUT/trueip.toml" <<EOF
[log]
access_log = false
level = "warn"
EOF
TRUEIP_ARGS=(--config "$OUT/trueip.toml")
export TOKIO_WORKER_THREADS=1
unset RUST_LOG
THREADS_NOTE="TOKIO_WORKER_THREADS=1, access log off"

TRUEIP_PROXY_PORT=$(free_port)
start trueip-proxy "$PROXY_CPU" "$TRUEIP_PROXY_PORT" "$TRUEIP" serve --listen "127.0.0.1:$TRUEIP_PROXY_PORT" \
    --upstream "http://127.0.0.1:$UP_PORT" --trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff "${TRUEIP_ARGS[@]}"

TRUEIP_WHOAMI_PORT=$(free_port)
start trueip-whoami "$PROXY_CPU" "$TRUEIP_WHOAMI_PORT" "$TRUEIP" serve --listen "127.0.0.1:$TRUEIP_WHOAMI_PORT" \
    --trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff "${TRUEIP_ARGS[@]}"

# Sanity: each side answers 200 and names the same client.
for pair in "nginx-proxy $NGINX_PROXY_PORT /" "trueip-proxy $TRUEIP_PROXY_PORT /" \
    "nginx-whoami $NGINX_WHOAMI_PORT /" "trueip-whoami $TRUEIP_WHOAMI_PORT $WHOAMI_PATH"; do
    set -- $pair
    python3 - "$1" "$2" "$3" "$XFF" >&2 <<'EOF'
import http.client, sys
name, port, path, xff = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
c.request("GET", path, headers={"X-Forwarded-For": xff})
r = c.getresponse()
body = r.read()
if r.status != 200:
    sys.exit(f"{name}: status {r.status}: {body[:200]!r}")
print(f"{name}: 200, {len(body)} body bytes: {body[:120]!r}")
EOF
done

run_wrk() { # name port path round
    local f="$OUT/wrk-$1-$4.txt"
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H "X-Forwarded-For: $XFF" "http://127.0.0.1:$2$3" >"$f" 2>&1
    echo "$f"
}

echo "warming up..." >&2
for target in "$NGINX_PROXY_PORT /" "$TRUEIP_PROXY_PORT /" "$NGINX_WHOAMI_PORT /" "$TRUEIP_WHOAMI_PORT $WHOAMI_PATH"; do
    set -- $target
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "X-Forwarded-For: $XFF" \
        "http://127.0.0.1:$1$2" >/dev/null 2>&1
done

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS..." >&2
    run_wrk nginx-proxy "$NGINX_PROXY_PORT" / "$round" >/dev/null
    run_wrk trueip-proxy "$TRUEIP_PROXY_PORT" / "$round" >/dev/null
    run_wrk nginx-whoami "$NGINX_WHOAMI_PORT" / "$round" >/dev/null
    run_wrk trueip-whoami "$TRUEIP_WHOAMI_PORT" "$WHOAMI_PATH" "$round" >/dev/null
done

rss() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
{
    echo "nginx-proxy $(rss "$PID_nginx_proxy")"
    echo "trueip-proxy $(rss "$PID_trueip_proxy")"
    echo "nginx-whoami $(rss "$PID_nginx_whoami")"
    echo "trueip-whoami $(rss "$PID_trueip_whoami")"
} >"$OUT/rss.txt"

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
WRK_VERSION=$(wrk -v 2>&1 | head -1 | awk '{print $2}')

python3 - "$OUT" "$ROUNDS" <<EOF
import re, statistics, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])

def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n

def parse(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    errs = re.search(r"Socket errors:.*", t)
    return rps, p50, p99, int(bad.group(1)) if bad else 0, errs.group(0) if errs else ""

rss = dict(l.split() for l in open(os.path.join(out, "rss.txt")) if len(l.split()) == 2)

def side(name):
    runs = [parse(os.path.join(out, f"wrk-{name}-{r}.txt")) for r in range(1, rounds + 1)]
    med = lambda i: statistics.median(r[i] for r in runs)
    bad = sum(r[3] for r in runs)
    errs = [r[4] for r in runs if r[4]]
    return dict(rps=med(0), p50=med(1), p99=med(2), rss=int(rss.get(name, 0)), bad=bad, errs=errs,
                all_rps=[round(r[0]) for r in runs])

print(f"wrk $WRK_VERSION, -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, X-Forwarded-For: $XFF; "
      f"median of {rounds} interleaved rounds; {os.cpu_count()} CPUs ($CPU_MODEL); nginx $NGINX_VERSION, "
      f"worker_processes 1; trueip: $THREADS_NOTE; proxies on CPU $PROXY_CPU, wrk and upstream on CPU $OTHER_CPUS.")
print()
print("| test | server | req/s | p50 ms | p99 ms | peak RSS MiB | req/s per round |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
rows = []
for test, a, b in [("proxy to upstream", "nginx-proxy", "trueip-proxy"),
                   ("whoami / return 200", "nginx-whoami", "trueip-whoami")]:
    sa, sb = side(a), side(b)
    for name, s in ((a, sa), (b, sb)):
        print(f"| {test} | {name} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['rss']/1024:.1f} | {s['all_rps']} |")
        if s["bad"] or s["errs"]:
            print(f"|  | {name}: {s['bad']} non-2xx; {'; '.join(s['errs'])} | | | | | |")
    rows.append((test, sa, sb))
print()
print("| test | trueip/nginx req/s | trueip/nginx p50 | trueip/nginx p99 | trueip/nginx peak RSS |")
print("| --- | ---: | ---: | ---: | ---: |")
for test, n, t in rows:
    r = lambda k: (t[k] / n[k]) if n[k] else float("nan")
    print(f"| {test} | {r('rps'):.2f} | {r('p50'):.2f} | {r('p99'):.2f} | {r('rss'):.2f} |")
EOF
