#!/usr/bin/env bash
# trueip serve vs nginx, side by side, on loopback, in one run.
#
#   bash bench/gateway.sh                          # builds target/release/trueip first
#   ROUNDS=5 DURATION=30s bash bench/gateway.sh
#   TRUEIP_BIN=/path/to/trueip bash bench/gateway.sh   # use a binary already built
#
# Two comparisons, each with identical wrk parameters and an X-Forwarded-For header from a
# trusted peer (every peer is on 127/8, and both sides trust 127.0.0.0/8 and 10.0.0.0/8):
#   proxy:  wrk → nginx (realip + proxy_pass, keepalive 64 to the upstream) → upstream
#           wrk → trueip serve --upstream (pooled client)                   → upstream
#   whoami: wrk → nginx (realip + `return 200` of a JSON body padded to trueip's response size)
#           wrk → trueip serve with no upstream: the built-in whoami, GET $WHOAMI_PATH
# The upstream is a third nginx, `return 200 "hello from upstream\n"`, shared by both proxies.
#
# Fairness: nginx runs one worker process (`worker_processes 1`, `master_process off`); trueip
# runs one worker (`[limits] workers = 1`: one thread, one event loop). Both proxies are
# pinned to the same CPU ($PROXY_CPU, the last one) with taskset, wrk and the upstream to the
# others. Neither writes an access log. Rounds are interleaved (nginx, trueip, nginx, trueip, ...) so drift on a shared
# machine hits both sides alike; the table reports each side's median round, the proxy's own CPU
# time per request (user + system from /proc/PID/stat, the figure least disturbed by neighbours)
# and its peak RSS (VmHWM) over the whole run.
#
# Needs: nginx, wrk, python3, taskset (util-linux), cargo. Prints a markdown table on stdout;
# configs, logs and raw wrk output go to $OUT (default target/bench-gateway).
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

# trueip: one worker, no access log (nginx has none either), diagnostics at warn.
cat >"$OUT/trueip.toml" <<EOF
[limits]
workers = 1
[log]
access_log = false
level = "warn"
EOF
TRUEIP_ARGS=(--config "$OUT/trueip.toml")
unset RUST_LOG
THREADS_NOTE="workers = 1, access log off"

TRUEIP_PROXY_PORT=$(free_port)
start trueip-proxy "$PROXY_CPU" "$TRUEIP_PROXY_PORT" "$TRUEIP" serve --listen "127.0.0.1:$TRUEIP_PROXY_PORT" \
    --upstream "http://127.0.0.1:$UP_PORT" --trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff "${TRUEIP_ARGS[@]}"

TRUEIP_WHOAMI_PORT=$(free_port)
start trueip-whoami "$PROXY_CPU" "$TRUEIP_WHOAMI_PORT" "$TRUEIP" serve --listen "127.0.0.1:$TRUEIP_WHOAMI_PORT" \
    --trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff "${TRUEIP_ARGS[@]}"

# One request: prints "<response bytes, head and body> <body bytes>"; fails unless 200.
response_size() { # name port path
    python3 - "$1" "$2" "$3" "$XFF" <<'EOF'
import socket, sys
name, port, path, xff = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n".encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 200"):
    sys.exit(f"{name}: {head[:200]!r}")
print(len(data), len(body))
print(f"{name}: 200, {len(data)} bytes ({len(body)} body): {body[:100]!r}", file=sys.stderr)
EOF
}

# nginx's whoami: realip, then `return 200` with a JSON body padded so that its whole response
# is as long as trueip's, so wrk parses as many bytes from both.
nginx_whoami() { # pad
    if [ -n "${PID_nginx_whoami:-}" ]; then
        kill "$PID_nginx_whoami"
        wait "$PID_nginx_whoami" 2>/dev/null || true
    fi
    nginx_conf nginx-whoami "    server {
        listen 127.0.0.1:$NGINX_WHOAMI_PORT;
        $REALIP
        location / { default_type application/json; return 200 '{\"client_ip\":\"\$remote_addr\",\"direct_ip\":\"\$realip_remote_addr\",\"pad\":\"$1\"}\n'; }
    }"
    start nginx-whoami "$PROXY_CPU" "$NGINX_WHOAMI_PORT" "$NGINX" -p "$OUT/nginx-whoami" -c "$OUT/nginx-whoami/nginx.conf" -e "$OUT/nginx-whoami/error.log"
}
NGINX_WHOAMI_PORT=$(free_port)
read -r TRUEIP_WHOAMI_BYTES _ < <(response_size trueip-whoami "$TRUEIP_WHOAMI_PORT" "$WHOAMI_PATH")
nginx_whoami ""
read -r NGINX_BARE_BYTES _ < <(response_size nginx-whoami "$NGINX_WHOAMI_PORT" /)
PAD=$((TRUEIP_WHOAMI_BYTES - NGINX_BARE_BYTES))
if [ "$PAD" -lt 0 ]; then PAD=0; fi
# Content-Length may gain a digit with the padding.
nginx_whoami "$(head -c "$PAD" /dev/zero | tr '\0' x)"
read -r NGINX_WHOAMI_BYTES _ < <(response_size nginx-whoami "$NGINX_WHOAMI_PORT" /)
if [ "$NGINX_WHOAMI_BYTES" -ne "$TRUEIP_WHOAMI_BYTES" ]; then
    nginx_whoami "$(head -c $((PAD + TRUEIP_WHOAMI_BYTES - NGINX_WHOAMI_BYTES)) /dev/zero | tr '\0' x)"
fi

# Sanity: each side answers 200; the sizes go in the report.
read -r NGINX_PROXY_BYTES _ < <(response_size nginx-proxy "$NGINX_PROXY_PORT" /)
read -r TRUEIP_PROXY_BYTES _ < <(response_size trueip-proxy "$TRUEIP_PROXY_PORT" /)
read -r NGINX_WHOAMI_BYTES _ < <(response_size nginx-whoami "$NGINX_WHOAMI_PORT" /)
read -r TRUEIP_WHOAMI_BYTES _ < <(response_size trueip-whoami "$TRUEIP_WHOAMI_PORT" "$WHOAMI_PATH")
for n in "$NGINX_PROXY_BYTES" "$TRUEIP_PROXY_BYTES" "$NGINX_WHOAMI_BYTES" "$TRUEIP_WHOAMI_BYTES"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "bench/gateway.sh: a server failed its sanity request" >&2; exit 1; }
done

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() { # name port path round
    local f="$OUT/wrk-$1-$4.txt" var="PID_${1//-/_}" before after
    before=$(cpu_ticks "${!var}")
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H "X-Forwarded-For: $XFF" "http://127.0.0.1:$2$3" >"$f" 2>&1
    after=$(cpu_ticks "${!var}")
    echo "$((after - before)) $(getconf CLK_TCK) $(cut -d' ' -f1 /proc/loadavg)" >"$OUT/cpu-$1-$4.txt"
}

echo "warming up..." >&2
for target in "$NGINX_PROXY_PORT /" "$TRUEIP_PROXY_PORT /" "$NGINX_WHOAMI_PORT /" "$TRUEIP_WHOAMI_PORT $WHOAMI_PATH"; do
    set -- $target
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "X-Forwarded-For: $XFF" \
        "http://127.0.0.1:$1$2" >/dev/null 2>&1
done

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS..." >&2
    run_wrk nginx-proxy "$NGINX_PROXY_PORT" / "$round"
    run_wrk trueip-proxy "$TRUEIP_PROXY_PORT" / "$round"
    run_wrk nginx-whoami "$NGINX_WHOAMI_PORT" / "$round"
    run_wrk trueip-whoami "$TRUEIP_WHOAMI_PORT" "$WHOAMI_PATH" "$round"
done

rss() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
{
    echo "nginx-proxy $(rss "$PID_nginx_proxy")"
    echo "trueip-proxy $(rss "$PID_trueip_proxy")"
    echo "nginx-whoami $(rss "$PID_nginx_whoami")"
    echo "trueip-whoami $(rss "$PID_trueip_whoami")"
} >"$OUT/rss.txt"

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo || true)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///' || true)
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')

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
    reqs = int(re.search(r"(\d+) requests in", t).group(1))
    ticks, hz, load = open(path.replace("/wrk-", "/cpu-")).read().split()
    cpu_us = int(ticks) / int(hz) * 1e6 / max(reqs, 1)
    return rps, p50, p99, int(bad.group(1)) if bad else 0, errs.group(0) if errs else "", cpu_us, float(load)

rss = dict(l.split() for l in open(os.path.join(out, "rss.txt")) if len(l.split()) == 2)

def side(name):
    runs = [parse(os.path.join(out, f"wrk-{name}-{r}.txt")) for r in range(1, rounds + 1)]
    med = lambda i: statistics.median(r[i] for r in runs)
    bad = sum(r[3] for r in runs)
    errs = [r[4] for r in runs if r[4]]
    return dict(rps=med(0), p50=med(1), p99=med(2), cpu=med(5), rss=int(rss.get(name, 0)), bad=bad,
                errs=errs, all_rps=[round(r[0]) for r in runs], load=max(r[6] for r in runs))

print(f"wrk $WRK_VERSION, -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, X-Forwarded-For: $XFF; "
      f"response bytes (head + body): nginx-proxy $NGINX_PROXY_BYTES, trueip-proxy $TRUEIP_PROXY_BYTES, "
      f"nginx-whoami $NGINX_WHOAMI_BYTES (padded), trueip-whoami $TRUEIP_WHOAMI_BYTES (GET $WHOAMI_PATH); "
      f"median of {rounds} interleaved rounds; {os.cpu_count()} CPUs ($CPU_MODEL); nginx $NGINX_VERSION, "
      f"worker_processes 1; trueip: $THREADS_NOTE; proxies on CPU $PROXY_CPU, wrk and upstream on CPU $OTHER_CPUS.")
print()
print("| test | server | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | req/s per round |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
rows = []
for test, a, b in [("proxy to upstream", "nginx-proxy", "trueip-proxy"),
                   ("whoami / return 200", "nginx-whoami", "trueip-whoami")]:
    sa, sb = side(a), side(b)
    for name, s in ((a, sa), (b, sb)):
        print(f"| {test} | {name} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['cpu']:.1f} | {s['rss']/1024:.1f} | {s['all_rps']} |")
        if s["bad"] or s["errs"]:
            print(f"|  | {name}: {s['bad']} non-2xx; {'; '.join(s['errs'])} | | | | | | |")
    rows.append((test, sa, sb))
print()
print("| test | trueip/nginx req/s | trueip/nginx p50 | trueip/nginx p99 | trueip/nginx CPU per req | trueip/nginx peak RSS |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for test, n, t in rows:
    r = lambda k: (t[k] / n[k]) if n[k] else float("nan")
    print(f"| {test} | {r('rps'):.2f} | {r('p50'):.2f} | {r('p99'):.2f} | {r('cpu'):.2f} | {r('rss'):.2f} |")
print()
print(f"Highest 1-minute load average seen during a run: {max(max(n['load'], t['load']) for _, n, t in rows):.2f} "
      f"on {os.cpu_count()} CPUs. The benchmark keeps about two CPUs busy; well above that, other work shared the "
      f"machine and req/s and latency are noisy. CPU µs/req (the proxy's own user + system time per request) is the "
      f"steadier figure.")
EOF
