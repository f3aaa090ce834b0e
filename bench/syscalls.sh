#!/usr/bin/env bash
# System calls per request on bench/gateway.sh's h2 row (HTTP/2 over TLS, h2load -c50 -m10,
# a plain HTTP/1.1 nginx upstream), or on its rows with a new connection per request, for
# trueip beside nginx and HAProxy: a count that load on a shared machine moves less than CPU
# time does.
#
#   bash bench/syscalls.sh                          # builds target/release/trueip first
#   TRUEIP_BIN=/new/trueip TRUEIP_BIN_BEFORE=/old/trueip ROUNDS=3 bash bench/syscalls.sh
#   PROTOCOL=close bash bench/syscalls.sh           # row close: plain HTTP/1.1, a new
#                                                   # connection per request
#   PROTOCOL=proxy-v2 bash bench/syscalls.sh        # row proxy-v2: the same on a PROXY v2
#                                                   # listener
#   PROTOCOL=close CLIENT=wrk bash bench/syscalls.sh
#                                                   # row close under wrk -c$CONNECTIONS for
#                                                   # $WRK_SECONDS (default 5) instead
#   PROTOCOL=tls-resume REQUESTS=5000 bash bench/syscalls.sh
#                                                   # row tls-resume: over TLS, each new
#                                                   # connection resuming the session
#   PROTOCOL=tls-close REQUESTS=5000 bash bench/syscalls.sh
#                                                   # row tls-close: the same with a full
#                                                   # handshake on every connection
#   BROWSER=1 CONNECTIONS=5 STREAMS=100 bash bench/syscalls.sh
#                                                   # row h2 with the request headers a
#                                                   # browser sends, over few connections
#
# The servers are started as bench/gateway.sh starts them for the row (the same nginx and
# HAProxy configs, the same trueip flags and `[[listen]]` table, one worker each, on
# $PROXY_CPU; upstream and load generator on the other CPUs). The load generator is h2load
# for h2; for close, proxy-v2, tls-close and tls-resume, bench/lib.sh's CLOSE_CLIENT ($CONNECTIONS
# connections at a time, a fixed count where wrk runs for a time; slower than wrk, so a
# server waits for more of its requests, and the counts that depend on timing, `epoll_wait`
# and the failed `accept4`, differ from a wrk run's). For each server and round: $WARMUP
# requests, then `perf stat` on the system-call tracepoints of the server's process (every
# thread) while the client sends exactly $REQUESTS more; each count is divided by $REQUESTS. The
# tracepoints do not stop the process as strace's ptrace does: under `strace -c` the gateway
# ran slowly enough to change what it did (fewer upstream connections opened per request).
# Beside the system calls: the packets the server's process sent (`net_dev_xmit`), the
# times it was switched out (`sched_switch`) and its page faults (`page-faults`). Also
# prints the server's user and system CPU time per request over the same run (from /proc,
# in clock ticks), and perf's task-clock over the counted window (finer than the ticks;
# load on the machine moves both). And the upstream's CPU time per request in the same window
# (its time on a CPU, from /proc/PID/schedstat): what each server costs the CPU it shares
# with the load generator, where the kernel also does part of the server's receiving.
#
# BROWSER=1 (PROTOCOL=h2 only): each request also carries the headers Chrome sends with a
# navigation (user-agent, accept, accept-language, accept-encoding, the sec-ch-ua and
# sec-fetch lines, upgrade-insecure-requests and a cookie), 13 lines and 762 bytes
# beside h2load's few. HPACK sends them indexed after the first request of a connection,
# and every server still decodes them and carries them upstream; the gateway also reads
# each one in its header rules.
#
# CLIENT=wrk (PROTOCOL=close only): the load is bench/gateway.sh's for the row, wrk with
# `Connection: close` for $WRK_SECONDS after as long a warm-up, and each count is divided by
# the requests wrk completed. wrk keeps the server busier than CLOSE_CLIENT, so more
# connections' requests are there when they are accepted: the counts that depend on that
# (a first `recv` that finds nothing, registering the socket with epoll) differ between the
# two clients, in either direction.
#
# Needs: perf (with tracefs), h2load (nghttp2-client), nginx, haproxy, openssl, taskset, python3
# (wrk for CLIENT=wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOCOL=${PROTOCOL:-h2}
case $PROTOCOL in h2 | close | proxy-v2 | tls-close | tls-resume) ;; *)
    echo "bench/syscalls.sh: PROTOCOL is h2, close, proxy-v2, tls-close or tls-resume, not $PROTOCOL" >&2; exit 1 ;;
esac
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
ROUNDS=${ROUNDS:-1}
CONNECTIONS=${CONNECTIONS:-50}
STREAMS=${STREAMS:-10}
CLIENT=${CLIENT:-python}
BROWSER=${BROWSER:-}
if [ -n "$BROWSER" ] && [ "$PROTOCOL" != h2 ]; then
    echo "bench/syscalls.sh: BROWSER=1 is for PROTOCOL=h2" >&2
    exit 1
fi
WRK_SECONDS=${WRK_SECONDS:-5}
case $CLIENT/$PROTOCOL in python/* | wrk/close) ;; *)
    echo "bench/syscalls.sh: CLIENT is python, or wrk with PROTOCOL=close, not $CLIENT with $PROTOCOL" >&2; exit 1 ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/bench-syscalls}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
if [ "$NCPU" -gt 1 ]; then OTHER_CPUS=${OTHER_CPUS:-0-$((NCPU - 2))}; else OTHER_CPUS=0; fi
XFF="203.0.113.7, 10.0.0.1"

for tool in perf h2load nginx haproxy openssl taskset python3; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "bench/syscalls.sh: $tool not found (Debian packages: linux-perf nghttp2-client nginx haproxy openssl util-linux python3)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
TRACEFS=/sys/kernel/tracing
[ -d "$TRACEFS/events/syscalls" ] || TRACEFS=/sys/kernel/debug/tracing
[ -d "$TRACEFS/events/syscalls" ] || { echo "bench/syscalls.sh: no syscall tracepoints under /sys/kernel/tracing" >&2; exit 1; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BROWSER_HEADERS=()
if [ -n "$BROWSER" ]; then browser_headers; fi
trueip_bins

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
trap cleanup EXIT

declare -A PID PORT
# start() records the pid; the port each server answers on is kept beside it.
start_on() { PORT[$1]=$3; start "$@"; }

# bench/gateway.sh's upstream, certificate, and row servers.
start_upstream "$OTHER_CPUS"
make_cert

# Each row's listener: nginx's listen line, HAProxy's bind suffix, trueip's [[listen]] keys.
TRUEIP_EXTRA=()
case $PROTOCOL in
    h2)
        NGINX_LISTEN="ssl http2;
        ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        $REALIP"
        HAPROXY_BIND="ssl crt $OUT/haproxy.pem alpn h2,http/1.1"
        TRUEIP_LISTEN="tls = { cert = \"$OUT/cert.pem\", key = \"$OUT/key.pem\" }"
        ;;
    tls-close | tls-resume)
        NGINX_LISTEN="ssl;
        ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        $REALIP"
        HAPROXY_BIND="ssl crt $OUT/haproxy.pem"
        TRUEIP_LISTEN="tls = { cert = \"$OUT/cert.pem\", key = \"$OUT/key.pem\" }"
        ;;
    close)
        NGINX_LISTEN="; $REALIP"
        HAPROXY_BIND=""
        TRUEIP_LISTEN=""
        ;;
    proxy-v2)
        NGINX_LISTEN="proxy_protocol; set_real_ip_from 127.0.0.0/8; real_ip_header proxy_protocol;"
        HAPROXY_BIND="accept-proxy"
        TRUEIP_LISTEN="proxy_protocol = \"v2\""
        TRUEIP_EXTRA=(--proxy-protocol-from 127.0.0.0/8)
        ;;
esac

port=$(free_port)
nginx_conf nginx "$(nginx_proxy "listen 127.0.0.1:$port $NGINX_LISTEN")"
start_on nginx "$PROXY_CPU" "$port" "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log"

port=$(free_port)
haproxy_conf "$OUT/haproxy.cfg" "127.0.0.1:$port $HAPROXY_BIND"
start_on haproxy "$PROXY_CPU" "$port" "$HAPROXY" -db -f "$OUT/haproxy.cfg"

unset RUST_LOG
for t in "${NAMES[@]}"; do
    port=$(free_port)
    printf '[[listen]]\naddress = "127.0.0.1:%s"\n%s\n[limits]\nworkers = 1\n%s\n[log]\naccess_log = false\nlevel = "warn"\n' \
        "$port" "$TRUEIP_LISTEN" "${LIMITS[$t]}" >"$OUT/$t.toml"
    start_on "$t" "$PROXY_CPU" "$port" "${BIN[$t]}" serve --upstream "http://127.0.0.1:$UP_PORT" \
        "${TRUEIP_POLICY[@]}" "${TRUEIP_EXTRA[@]}" --config "$OUT/$t.toml"
done
SERVERS=("${NAMES[@]}" haproxy nginx)

EVENTS=task-clock,page-faults,raw_syscalls:sys_enter
for s in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait \
    epoll_ctl futex connect accept4 socket close shutdown setsockopt getsockopt getsockname \
    ioctl clock_gettime getpid getrandom madvise mmap munmap; do
    [ -d "$TRACEFS/events/syscalls/sys_enter_$s" ] && EVENTS+=",syscalls:sys_enter_$s"
done
# Beside the system calls: the packets the server's process put on the loopback device (its
# sends, and any ACK the kernel sent while running it), and the times it was switched out.
for t in net:net_dev_xmit sched:sched_switch; do
    [ -d "$TRACEFS/events/${t/://}" ] && EVENTS+=",$t"
done

load() { # port count file
    if [ "$CLIENT" = wrk ]; then
        taskset -c "$OTHER_CPUS" timeout -k 5 $((WRK_SECONDS + 30)) wrk -t1 -c"$CONNECTIONS" \
            -d"$WRK_SECONDS"s -H "X-Forwarded-For: $XFF" -H "Connection: close" \
            "http://127.0.0.1:$1/" >"$3" 2>&1
    elif [ "$PROTOCOL" = h2 ]; then
        taskset -c "$OTHER_CPUS" timeout -k 5 300 h2load -n "$2" -c "$CONNECTIONS" -m "$STREAMS" \
            -H "x-forwarded-for: $XFF" "${BROWSER_HEADERS[@]}" "https://127.0.0.1:$1/" >"$3" 2>&1
    else
        taskset -c "$OTHER_CPUS" timeout -k 5 300 python3 -c "$CLOSE_CLIENT" "$1" "$2" \
            "$CONNECTIONS" "$PROTOCOL" "$XFF" >"$3" 2>&1
    fi
}
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user system
# Nanoseconds a process has run on a CPU (the upstream nginx is one single-threaded process).
run_ns() { awk '{print $1}' "/proc/$1/schedstat"; }

for round in $(seq 1 "$ROUNDS"); do
    for name in "${SERVERS[@]}"; do
        f=$OUT/$name-$round
        load "${PORT[$name]}" "$WARMUP" "$f.warmup.txt"
        read -r user0 sys0 < <(cpu_ticks "${PID[$name]}")
        up0=$(run_ns "${PID[upstream]}")
        perf stat -x, -e "$EVENTS" -p "${PID[$name]}" -o "$f.perf" &
        perf_pid=$!
        sleep 0.5
        load "${PORT[$name]}" "$REQUESTS" "$f.h2load.txt"
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        read -r user1 sys1 < <(cpu_ticks "${PID[$name]}")
        echo "$((user1 - user0)) $((sys1 - sys0))" >"$f.ticks"
        echo "$(($(run_ns "${PID[upstream]}") - up0))" >"$f.upstream-ns"
        if [ "$CLIENT" = wrk ]; then
            awk '/ requests in / {print $1}' "$f.h2load.txt" >"$f.n"
            [ -s "$f.n" ] && ! grep -q 'Non-2xx\|Socket errors' "$f.h2load.txt" ||
                { echo "bench/syscalls.sh: $name answered other than 200 or broke connections under wrk; see $f.h2load.txt" >&2; exit 1; }
            continue
        fi
        echo "$REQUESTS" >"$f.n"
        { [ "$PROTOCOL" != h2 ] || grep -q '^Application protocol: h2' "$f.h2load.txt"; } &&
            grep -q "^requests: .* $REQUESTS succeeded" "$f.h2load.txt" &&
            grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$f.h2load.txt" ||
            { echo "bench/syscalls.sh: $name did not answer $REQUESTS requests ($PROTOCOL) with 200; see $f.h2load.txt" >&2; exit 1; }
        { [ "$PROTOCOL" != tls-resume ] || grep -q "^resumed: $REQUESTS of" "$f.h2load.txt"; } ||
            { echo "bench/syscalls.sh: $name did not resume every session; see $f.h2load.txt" >&2; exit 1; }
        { [ "$PROTOCOL" != tls-close ] || grep -q "^resumed: 0 of" "$f.h2load.txt"; } ||
            { echo "bench/syscalls.sh: $name resumed a session on tls-close; see $f.h2load.txt" >&2; exit 1; }
    done
done

if [ "$CLIENT" = wrk ]; then
    LOAD_NOTE="wrk -t1 -c$CONNECTIONS -d${WRK_SECONDS}s with Connection: close (counts divided by the requests wrk completed)"
elif [ "$PROTOCOL" = h2 ]; then
    LOAD_NOTE="h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS${BROWSER:+, with the request headers of a browser}"
else
    LOAD_NOTE="$REQUESTS new connections ($PROTOCOL, CLOSE_CLIENT, $CONNECTIONS at a time)"
fi
python3 - "$OUT" "$ROUNDS" "$(getconf CLK_TCK)" "$LOAD_NOTE" "${SERVERS[@]}" <<'PY'
import statistics, sys
out, rounds, tck, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
servers = sys.argv[5:]
counts = {s: {} for s in servers}
cpu = {s: ([], []) for s in servers}
clock = {s: [] for s in servers}
upstream = {s: [] for s in servers}
for s in servers:
    for r in range(1, rounds + 1):
        n = int(open(f"{out}/{s}-{r}.n").read())
        for line in open(f"{out}/{s}-{r}.perf"):
            f = line.split(",")
            if len(f) > 2 and f[2] == "task-clock":
                clock[s].append(float(f[0]) * 1e3 / n)  # msec -> µs
                continue
            if len(f) < 3 or not f[0].isdigit():
                continue
            name = f[2].split(":")[-1].removeprefix("sys_enter").lstrip("_") or "all"
            counts[s].setdefault(name, [0] * rounds)[r - 1] = int(f[0]) / n
        upstream[s].append(int(open(f"{out}/{s}-{r}.upstream-ns").read()) / 1e3 / n)
        for i, t in enumerate(open(f"{out}/{s}-{r}.ticks").read().split()):
            cpu[s][i].append(int(t) / tck / n * 1e6)
names = sorted({k for s in servers for k, v in counts[s].items() if max(v) >= 0.005},
               key=lambda k: (k != "all", -max(max(counts[s].get(k, [0])) for s in servers)))
def cell(v):
    m = statistics.median(v)
    return f"{m:.2f}" if max(v) - min(v) < 0.02 else f"{m:.2f} ({min(v):.2f}–{max(v):.2f})"
print(f"{load} per round, {rounds} round(s); system calls per request"
      " (median, and the range when rounds differ)")
print()
print("| system call | " + " | ".join(servers) + " |")
print("| --- |" + " ---: |" * len(servers))
for k in names:
    print(f"| {k} | " + " | ".join(cell(counts[s].get(k, [0] * rounds)) for s in servers) + " |")
print("| CPU µs per request: user | " + " | ".join(cell(cpu[s][0]) for s in servers) + " |")
print("| CPU µs per request: system | " + " | ".join(cell(cpu[s][1]) for s in servers) + " |")
print("| CPU µs per request: task-clock | " + " | ".join(cell(clock[s]) for s in servers) + " |")
print("| the upstream's CPU µs per request | " + " | ".join(cell(upstream[s]) for s in servers) + " |")
PY
