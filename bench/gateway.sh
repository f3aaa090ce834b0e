#!/usr/bin/env bash
# trueip serve vs nginx vs HAProxy, side by side, on loopback, in one run.
#
#   bash bench/gateway.sh                          # builds target/release/trueip first
#   ROUNDS=5 DURATION=30s bash bench/gateway.sh
#   TRUEIP_BIN=/path/to/trueip bash bench/gateway.sh   # use a binary already built
#   TRUEIP_BIN=/new/trueip TRUEIP_BIN_BEFORE=/old/trueip bash bench/gateway.sh
#                                                  # before and after, interleaved in one run
#   ROWS="close tls-close" bash bench/gateway.sh    # a subset of the rows (default: all)
#   CPU_QUOTA=0.2 bash bench/gateway.sh            # every server held to 0.2 of a CPU (root)
#
# Every row proxies to the same upstream, a separate nginx answering
# `return 200 "hello from upstream\n"`, and every request carries an X-Forwarded-For header
# from a peer on 127/8. Each row starts its own three servers (so peak RSS is the row's), and
# rows differ in the listener and in how the load generator connects:
#
#   proxy      plain HTTP/1.1, keep-alive (wrk -t$WRK_THREADS -c$CONNECTIONS).
#   close      plain HTTP/1.1, a new connection per request (wrk with `Connection: close`:
#              the server answers and closes, wrk connects again).
#   tls        TLS, keep-alive: a round pays $CONNECTIONS handshakes, the rest is records.
#   tls-close  TLS, a new connection and a full handshake per request: wrk with
#              `Connection: close` and bench/wrk-shim.c (WRK_SHIM_NO_RESUME), which makes
#              wrk forget the session on every reconnect.
#   tls-resume TLS, a new connection per request, resuming the session: plain wrk with
#              `Connection: close`, which keeps the session across SSL_clear and offers its
#              ticket (TLS 1.3 PSK with (EC)DHE) on every reconnect. The sanity check below
#              asks each server of both rows, with `openssl s_client -sess_out/-sess_in`,
#              whether it resumes a session ("resumption: yes" in the report); on tls-close
#              the client never offers one.
#   h2         HTTP/2 over TLS (ALPN h2): h2load -c$CONNECTIONS -m$H2_STREAMS, keep-alive.
#              p50/p99 come from h2load's per-request log (time until the end of the response).
#   proxy-v2   plain HTTP/1.1 on a PROXY v2 listener, a new connection per request: wrk with
#              `Connection: close` and bench/wrk-shim.c (WRK_SHIM_PROXY_V2), which starts
#              each connection with a PROXY v2 header (TCP4, source 198.51.100.7) in the same
#              write as the request. The client each server then names is that source.
#   whoami     (diagnostic; no target) nginx realip + `return 200` of a JSON body padded to
#              trueip's response size, vs trueip serve with no upstream, GET $WHOAMI_PATH,
#              keep-alive.
#
# The servers:
#     nginx   realip (trusts 127.0.0.0/8 and 10.0.0.0/8, real_ip_recursive on; on the PROXY
#             listener `real_ip_header proxy_protocol` instead), proxy_pass to an upstream
#             block with `keepalive 64`; sets X-Real-IP, X-Forwarded-For
#             ($proxy_add_x_forwarded_for: the received list plus the peer) and
#             X-Forwarded-Proto. TLS: `listen ... ssl` with `ssl_protocols TLSv1.2 TLSv1.3`
#             (nginx before 1.23.4 leaves TLS 1.3 out), `http2` on the h2 row's listener,
#             `proxy_protocol` on the PROXY row's. Session tickets are on by default.
#     HAProxy `mode http`, `option forwardfor` (adds an X-Forwarded-For line with the peer),
#             `http-reuse always` (idle upstream connections shared by every client
#             connection), `nbthread 1`; `bind ... ssl crt` (`alpn h2,http/1.1` on the h2 row),
#             `accept-proxy` on the PROXY row. No trust, no realip, no other header: HAProxy
#             does the least header work of the three.
#     trueip  `serve --upstream`, `--trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy
#             rightmost-untrusted --from xff` (and `--proxy-protocol-from 127.0.0.0/8` on the
#             PROXY row, `[[listen]] proxy_protocol = "v2"`): resolves the client, strips and
#             rewrites every forwarding header (X-Real-IP, X-Forwarded-For, Forwarded,
#             X-Forwarded-Proto/-Host/-Port), pooled upstream connections, metrics kept.
#             TLS: rustls with the ring provider, `[[listen]] tls = {...}`, ALPN h2 and
#             http/1.1 offered, session tickets on (the default).
# Accept is deferred until the client writes, on every server (DEFER=1, the default): trueip
# defers by default (`[limits] defer_accept`, TCP_DEFER_ACCEPT for one second), so nginx's
# listeners get `deferred` and HAProxy's binds `defer-accept`, the same option at the same
# second. DEFER=0 turns it off everywhere (trueip's `defer_accept = false`).
#
# CPU_QUOTA (optional, a fraction of one CPU, e.g. 0.2; off by default): every server under
# test (nginx, HAProxy, each trueip) runs under the same CPU bandwidth limit, so the server,
# not the load generator, limits every row. Without it, on the rows that open a connection
# per request, the servers are busy only 0.4-0.6 of their CPU: wrk and the upstream, on the
# other CPU, set the requests/s, and one server's rounds spread up to 2x. Under the limit
# requests/s is about CPU_QUOTA / (CPU per request). The quota must sit well below what a
# row reaches unlimited; 0.2 held every server of `close` and `proxy-v2` at 0.93-0.98 of it
# on a machine with a load average of 14, where 0.3 held them at 0.69-0.80.
#   - Each server gets its own cgroup v1 cpu group, $CGROUP_CPU/trueip-bench.XXXXXX/NAME
#     (CGROUP_CPU defaults to /sys/fs/cgroup/cpu; root needed), entered before exec so every
#     thread is in it, with cpu.cfs_quota_us = CPU_QUOTA x cpu.cfs_period_us. The groups are
#     removed when the script exits or is interrupted.
#   - CPU_PERIOD_US (default 10000): a server that spent its quota waits out the rest of the
#     period, (1 - CPU_QUOTA) x period, 8 ms at 0.2, with every request it holds. The
#     kernel's 100 ms period would make that 80 ms, and p99 would measure the throttling;
#     at 10 ms it stays below the queueing wait wrk's 50 connections see anyway at these
#     rates (p50 8-12 ms on `close`), for 100 period timers a second. The kernel refuses a
#     quota below 1 ms, so shorter periods leave little room below 0.1-0.2 of a CPU.
#   - A quota is a ceiling, not a guarantee. Beside other work on both CPUs (a compiler) the
#     servers may get less than their quota and wrk less than its CPU, so each server's
#     group and a group `load` (wrk or h2load, and the upstream) get cpu.shares =
#     CPU_SHARES (default 262144, the kernel's most). Weight buys CPU time, not a prompt
#     wake-up: wrk and the upstream still waited out a neighbour's time slice at every
#     wake-up, and held the servers at 0.35 of the quota on `close`. So they also run
#     real-time (SCHED_FIFO priority LOAD_RT_PRIO, default 10; LOAD_RT=0 leaves them
#     ordinary), pinned to their CPU as always. They mostly wait on the servers, and with
#     real-time group scheduling the group `load` may take at most LOAD_RT_SHARE (default
#     0.9) of its CPU in each CPU_PERIOD_US (the kernel's 1 s period would stop wrk for
#     tenths of a second once a second's share ran out, and p99 would show it).
#   - The report adds per server its CPU busy ÷ the quota (about 1 for every server of a
#     row, or that row's server was not the limit) and its throttled periods (cpu.stat's
#     nr_throttled ÷ nr_periods in the round: how often it had work left when its quota
#     ran out), and per row whether every server's lowest round reached 0.90 of the quota.
# Every TLS listener has one P-256 certificate made by openssl into $OUT. The protocol and
# cipher each server negotiated with the sanity request (Python's ssl, the same OpenSSL as
# wrk, default settings) go in the report.
# Every server picks the TLS 1.3 suite by the same order, its own (TLS_SUITES, the default:
# AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM): trueip's listener does by default, HAProxy
# keeps the server's order by default and is given the list (`ciphersuites`), nginx gets
# `ssl_prefer_server_ciphers on` and the list (`ssl_conf_command Ciphersuites`). Without it,
# wrk's OpenSSL lists AES-256-GCM-SHA384 first and nginx and HAProxy follow, so a handshake
# would hash with SHA-384 on the peers and SHA-256 on trueip. TLS_SUITES= (empty) leaves
# nginx and HAProxy at their defaults.
#
# Latency: wrk times a request from its first byte written to the response's last byte read;
# on the rows with a new connection per request the connect and the handshake come before
# that, so they count in req/s and CPU per request, not in p50/p99.
#
# Fairness: nginx runs one worker process (`worker_processes 1`, `master_process off`);
# HAProxy one process with one thread (`nbthread 1`, foreground, no master); trueip one worker
# (`[limits] workers = 1`: one thread, one event loop). Every server under test is pinned to
# the same CPU ($PROXY_CPU, the last one) with taskset, the load generator and the upstream to
# the others. None writes an access log. Rounds are interleaved: in each round every server of
# a row runs once, one after the other, and the order rotates by one from round to round, so
# drift on a shared machine hits every side alike. Each row's table reports every server's
# median round, its own CPU time per request (user + system from /proc/PID/stat, the figure
# least disturbed by neighbours), that time over the round's length ("CPU busy": below about
# 0.9 the server was not what limited the round, and its req/s and latency measure the machine)
# and its peak RSS (VmHWM) over the whole run, then ratios. The
# summary adds each server's best round beside the median: a neighbour only takes time away.
# Every load run is bounded by its duration (and `timeout`, should a tool hang).
#
# TRUEIP_BIN_BEFORE (optional): a second trueip binary that runs in every row beside the first,
# interleaved with it, so a before/after comparison comes from one run ("trueip-before").
#
# Needs: nginx, haproxy, wrk, h2load (nghttp2-client; the h2 row only), openssl, python3,
# taskset (util-linux), timeout (coreutils), gcc (for bench/wrk-shim.c; the tls-close and
# proxy-v2 rows only), cargo. A row whose tool is missing stops the run with a message; none
# is skipped silently. Prints markdown tables on stdout; configs, logs and raw output go to
# $OUT (default target/bench-gateway).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}
H2_STREAMS=${H2_STREAMS:-10}
WARMUP=${WARMUP:-2s}
WHOAMI_PATH=${WHOAMI_PATH:-/json}
DEFER=${DEFER:-1}
TLS_SUITES=${TLS_SUITES-TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384}
CPU_QUOTA=${CPU_QUOTA:-}
CPU_PERIOD_US=${CPU_PERIOD_US:-10000}
CGROUP_CPU=${CGROUP_CPU:-/sys/fs/cgroup/cpu}
CPU_SHARES=${CPU_SHARES:-262144}
LOAD_RT=${LOAD_RT:-1}
LOAD_RT_PRIO=${LOAD_RT_PRIO:-10}
LOAD_RT_SHARE=${LOAD_RT_SHARE:-0.9}
ALL_ROWS="proxy close tls tls-close tls-resume h2 proxy-v2 whoami"
ROWS=${ROWS:-$ALL_ROWS}
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

row_on() { [[ " $ROWS " == *" $1 "* ]]; }
for row in $ROWS; do
    [[ " $ALL_ROWS " == *" $row "* ]] || { echo "bench/gateway.sh: no row '$row' (rows: $ALL_ROWS)" >&2; exit 1; }
done

need() { # tool why
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
        echo "bench/gateway.sh: $1 not found, $2" >&2
        exit 1
    fi
}
for tool in nginx haproxy wrk openssl python3 taskset timeout; do
    need "$tool" "needed by every row (Debian packages: nginx haproxy wrk openssl python3 util-linux coreutils)"
done
if row_on h2; then need h2load "needed by the h2 row (Debian package nghttp2-client; or leave h2 out of ROWS)"; fi
if row_on tls-close || row_on proxy-v2; then
    need gcc "needed to build bench/wrk-shim.c for the tls-close and proxy-v2 rows (or leave them out of ROWS)"
fi
QUOTA_US=""
if [ -n "$CPU_QUOTA" ]; then
    if ! QUOTA_US=$(awk -v q="$CPU_QUOTA" -v p="$CPU_PERIOD_US" 'BEGIN {
            if (q !~ /^[0-9]*\.?[0-9]+$/ || q <= 0 || q > 1 || p !~ /^[0-9]+$/) exit 1
            printf "%d", q * p + 0.5 }'); then
        echo "bench/gateway.sh: CPU_QUOTA must be a fraction of one CPU in (0, 1] and CPU_PERIOD_US a whole number of microseconds (got '$CPU_QUOTA', '$CPU_PERIOD_US')" >&2
        exit 1
    fi
    if ! awk -v s="$LOAD_RT_SHARE" 'BEGIN { exit !(s ~ /^0?\.[0-9]+$/ && s > 0 && s <= 0.95) }'; then
        echo "bench/gateway.sh: LOAD_RT_SHARE must be a fraction of a CPU, above 0 and at most the kernel's 0.95 (got '$LOAD_RT_SHARE')" >&2
        exit 1
    fi
    if ! [[ "$CPU_SHARES" =~ ^[0-9]+$ ]] || [ "$CPU_SHARES" -lt 2 ] || [ "$CPU_SHARES" -gt 262144 ]; then
        echo "bench/gateway.sh: CPU_SHARES must be a whole number from 2 to 262144 (got '$CPU_SHARES')" >&2
        exit 1
    fi
    if [ "$CPU_PERIOD_US" -lt 1000 ] || [ "$CPU_PERIOD_US" -gt 1000000 ] || [ "$QUOTA_US" -lt 1000 ]; then
        echo "bench/gateway.sh: the kernel takes a period of 1 ms to 1 s and a quota of at least 1 ms; CPU_QUOTA=$CPU_QUOTA of CPU_PERIOD_US=$CPU_PERIOD_US gives $QUOTA_US us" >&2
        exit 1
    fi
    if [ ! -f "$CGROUP_CPU/cpu.cfs_quota_us" ] || [ ! -w "$CGROUP_CPU/cgroup.procs" ]; then
        echo "bench/gateway.sh: CPU_QUOTA needs cgroup v1's cpu controller, writable, at $CGROUP_CPU (set CGROUP_CPU; root needed)" >&2
        exit 1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -n "${TRUEIP_BIN:-}" ] || need cargo "needed to build trueip (or set TRUEIP_BIN)"
trueip_bins
for t in "${NAMES[@]}"; do
    if ! "${BIN[$t]}" serve --help >/dev/null 2>&1; then
        echo "bench/gateway.sh: ${BIN[$t]} has no working 'serve' command" >&2
        exit 1
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

SHIM=$OUT/wrk-shim.so
if row_on tls-close || row_on proxy-v2; then
    gcc -O2 -Wall -shared -fPIC -o "$SHIM" bench/wrk-shim.c -ldl
fi

declare -A PID PORT URLPATH SCHEME ROW_OF
# CPU_QUOTA's cgroups, made below and removed once their servers have exited. An interrupt
# exits through the EXIT trap, so neither the servers nor the groups outlive the run.
CGROUP=""
remove_cgroups() {
    [ -n "$CGROUP" ] || return 0
    local d
    for _ in $(seq 1 50); do
        for d in "$CGROUP"/*/; do [ ! -d "$d" ] || rmdir "$d" 2>/dev/null || true; done
        if rmdir "$CGROUP" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "bench/gateway.sh: could not remove $CGROUP" >&2
}
trap 'cleanup; remove_cgroups' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# LOAD_GROUP: the command prefix that runs the load generator in the group `load`.
LOAD_GROUP=()
if [ -n "$CPU_QUOTA" ]; then
    CGROUP=$(mktemp -d "$CGROUP_CPU/trueip-bench.XXXXXX")
    mkdir "$CGROUP/load"
    echo "$CPU_SHARES" >"$CGROUP/load/cpu.shares"
    LOAD_GROUP=(bash -c 'echo $$ >"$0" && exec "$@"' "$CGROUP/load/cgroup.procs")
    if [ "$LOAD_RT" = 1 ]; then
        # With real-time group scheduling in the kernel, a group runs real-time processes only
        # within its own runtime, taken from its parent's.
        if [ -f "$CGROUP/load/cpu.rt_runtime_us" ]; then
            echo "$(awk -v s="$LOAD_RT_SHARE" -v p="$(cat "$CGROUP/cpu.rt_period_us")" 'BEGIN {printf "%d", s * p}')" \
                >"$CGROUP/cpu.rt_runtime_us"
            echo "$CPU_PERIOD_US" >"$CGROUP/load/cpu.rt_period_us"
            echo "$(awk -v s="$LOAD_RT_SHARE" -v p="$CPU_PERIOD_US" 'BEGIN {printf "%d", s * p}')" \
                >"$CGROUP/load/cpu.rt_runtime_us"
        fi
        LOAD_GROUP+=(chrt -f "$LOAD_RT_PRIO")
    fi
fi

# The cgroup of server NAME under CPU_QUOTA, with the quota and the shares set.
cgroup_for() { # name
    local g="$CGROUP/$1"
    [ -d "$g" ] || mkdir "$g"
    echo "$CPU_SHARES" >"$g/cpu.shares"
    echo "$CPU_PERIOD_US" >"$g/cpu.cfs_period_us"
    echo "$QUOTA_US" >"$g/cpu.cfs_quota_us"
    echo "$g"
}

# A server under test: started on $PROXY_CPU (in its own cgroup under CPU_QUOTA, entered
# before exec, so every thread it starts is limited too), measured at
# SCHEME://127.0.0.1:PORT PATH.
serve() { # name scheme port path cmd...
    local name=$1 g
    SCHEME[$name]=$2
    PORT[$name]=$3
    URLPATH[$name]=$4
    shift 4
    if [ -n "$CPU_QUOTA" ]; then
        g=$(cgroup_for "$name")
        start "$name" "$PROXY_CPU" "${PORT[$name]}" \
            bash -c 'echo $$ >"$0" && exec "$@"' "$g/cgroup.procs" "$@"
    else
        start "$name" "$PROXY_CPU" "${PORT[$name]}" "$@"
    fi
}

nginx_serve() { # name scheme port path server-block
    nginx_conf "$1" "$5"
    serve "$1" "$2" "$3" "$4" "$NGINX" -p "$OUT/$1" -c "$OUT/$1/nginx.conf" -e "$OUT/$1/error.log"
}

start_upstream "$OTHER_CPUS"
# One process (`master_process off`), idle so far: it moves whole.
if [ -n "$CPU_QUOTA" ]; then
    echo "${PID[upstream]}" >"$CGROUP/load/cgroup.procs"
    [ "$LOAD_RT" != 1 ] || chrt -f -p "$LOAD_RT_PRIO" "${PID[upstream]}" >/dev/null
fi
make_cert
NGINX_TLS="ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;"
HAPROXY_TLS=""
if [ -n "$TLS_SUITES" ]; then
    NGINX_TLS+="
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites $TLS_SUITES;"
    HAPROXY_TLS=" ciphersuites $TLS_SUITES"
fi

# haproxy_serve NAME SCHEME PORT BIND_SUFFIX: haproxy_conf's server, in the foreground.
haproxy_serve() {
    local d="$OUT/$1"
    mkdir -p "$d"
    haproxy_conf "$d/haproxy.cfg" "127.0.0.1:$3$4"
    "$HAPROXY" -c -q -f "$d/haproxy.cfg"
    serve "$1" "$2" "$3" / "$HAPROXY" -db -f "$d/haproxy.cfg"
}

# trueip: one worker, no access log (nginx and HAProxy have none either), diagnostics at warn.
TRUEIP_BASE="[limits]
workers = 1
[log]
access_log = false
level = \"warn\""
# A build from before `[limits] defer_accept` refuses the key, and defers nothing: it is
# named in the report (`defers: no`) and runs without it.
declare -A DEFER_LINE
printf '[limits]\ndefer_accept = true\n' >"$OUT/defer-probe.toml"
for t in "${NAMES[@]}"; do
    DEFER_LINE[$t]=""
    if "${BIN[$t]}" serve --check --config "$OUT/defer-probe.toml" \
        --upstream http://127.0.0.1:9 >/dev/null 2>&1; then
        DEFER_LINE[$t]="defer_accept = $([ "$DEFER" = 1 ] && echo true || echo false)"
    fi
done
# trueip_base T: TRUEIP_BASE for binary T, with its defer_accept line where it has one.
trueip_base() {
    if [ -n "${DEFER_LINE[$1]}" ]; then
        printf '%s\n' "$TRUEIP_BASE" | sed "1a ${DEFER_LINE[$1]}"
    else
        printf '%s\n' "$TRUEIP_BASE"
    fi
}
unset RUST_LOG
THREADS_NOTE="workers = 1, access log off"

# What each row's listeners are: plain, tls, h2 (TLS with ALPN h2) or pp2 (PROXY v2, plain).
declare -A LISTENER=([proxy]=plain [close]=plain [tls]=tls [tls-close]=tls [tls-resume]=tls
    [h2]=h2 [proxy-v2]=pp2)
# How the load generator connects: keep-alive, close (a new connection per request), fresh
# (close, and no TLS session kept), pp2 (close, a PROXY v2 header first), h2load.
declare -A LOAD=([proxy]=keep-alive [close]=close [tls]=keep-alive [tls-close]=fresh
    [tls-resume]=close [h2]=h2load [proxy-v2]=pp2 [whoami]=keep-alive)

# The servers of ROW, named SERVER-ROW, each listening as LISTENER[ROW] says.
start_row() { # row
    local row=$1 kind=${LISTENER[$1]} port listen suffix scheme=http t
    [ "$kind" = plain ] || [ "$kind" = pp2 ] || scheme=https
    port=$(free_port)
    local nginx_defer="" haproxy_defer=""
    [ "$DEFER" = 1 ] && nginx_defer=" deferred" haproxy_defer=" defer-accept"
    case $kind in
        plain) listen="listen 127.0.0.1:$port$nginx_defer; $REALIP" ;;
        tls) listen="listen 127.0.0.1:$port ssl$nginx_defer; $NGINX_TLS $REALIP" ;;
        h2) listen="listen 127.0.0.1:$port ssl http2$nginx_defer; $NGINX_TLS $REALIP" ;;
        pp2) listen="listen 127.0.0.1:$port proxy_protocol$nginx_defer; set_real_ip_from 127.0.0.0/8; real_ip_header proxy_protocol;" ;;
    esac
    nginx_serve "nginx-$row" "$scheme" "$port" / "$(nginx_proxy "$listen")"
    case $kind in
        plain) suffix="" ;;
        tls) suffix=" ssl crt $OUT/haproxy.pem$HAPROXY_TLS" ;;
        h2) suffix=" ssl crt $OUT/haproxy.pem$HAPROXY_TLS alpn h2,http/1.1" ;;
        pp2) suffix=" accept-proxy" ;;
    esac
    suffix+=$haproxy_defer
    haproxy_serve "haproxy-$row" "$scheme" "$(free_port)" "$suffix"
    ROW_SERVERS[$row]="nginx-$row haproxy-$row"
    for t in "${NAMES[@]}"; do
        port=$(free_port)
        local extra=() listen_toml="[[listen]]
address = \"127.0.0.1:$port\""
        case $kind in
            tls | h2) listen_toml+="
tls = { cert = \"$OUT/cert.pem\", key = \"$OUT/key.pem\" }" ;;
            pp2)
                listen_toml+="
proxy_protocol = \"v2\""
                extra=(--proxy-protocol-from 127.0.0.0/8)
                ;;
        esac
        printf '%s\n%s\n' "$listen_toml" "$(trueip_base "$t")" >"$OUT/$t-$row.toml"
        # No --listen: it would replace the [[listen]] table with a plain HTTP listener.
        serve "$t-$row" "$scheme" "$port" / "${BIN[$t]}" serve \
            --upstream "http://127.0.0.1:$UP_PORT" "${TRUEIP_POLICY[@]}" "${extra[@]}" \
            --config "$OUT/$t-$row.toml"
        ROW_SERVERS[$row]+=" $t-$row"
    done
    for name in ${ROW_SERVERS[$row]}; do ROW_OF[$name]=$row; done
}

declare -A ROW_SERVERS
for row in $ROWS; do
    [ "$row" = whoami ] || start_row "$row"
done

# One request: prints "<response bytes, head and body> <body bytes>"; fails unless 200.
# Over TLS, also writes the negotiated protocol and cipher to $OUT/tls-NAME.txt; on a PROXY
# listener, sends the header wrk-shim.c sends first. (The h2 row's servers are asked over
# HTTP/1.1 here, and over h2 by h2load below.)
response_size() { # name
    local name=$1 pp2=0
    [ "${ROW_OF[$name]}" != proxy-v2 ] || pp2=1
    python3 - "$name" "${SCHEME[$name]}" "${PORT[$name]}" "${URLPATH[$name]}" "$XFF" "$OUT" "$pp2" <<'PY'
import socket, ssl, sys
name, scheme, port, path, xff, out, pp2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7] == "1"
s = socket.create_connection(("127.0.0.1", port), timeout=5)
if pp2:
    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes([198, 51, 100, 7, 127, 0, 0, 1])
              + (40000).to_bytes(2, "big") + port.to_bytes(2, "big"))
if scheme == "https":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s, server_hostname="localhost")
    with open(f"{out}/tls-{name}.txt", "w") as f:
        print(s.version(), s.cipher()[0], file=f)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n".encode())
data = b""
try:
    while chunk := s.recv(65536):
        data += chunk
except ssl.SSLError:
    pass  # a server that closes without close_notify
head, _, body = data.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 200"):
    sys.exit(f"{name}: {head[:200]!r}")
print(len(data), len(body))
print(f"{name}: 200, {len(data)} bytes ({len(body)} body): {body[:100]!r}", file=sys.stderr)
PY
}

# Whether a TLS server resumes a session: a first connection saves the session (and the
# ticket that follows the handshake), a second offers it.
resumes() { # name
    local s="$OUT/session-$1.pem" req='GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n'
    printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername localhost \
        -sess_out "$s" -quiet >/dev/null 2>&1 || true
    if printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername localhost \
        -sess_in "$s" 2>/dev/null | grep -q '^Reused'; then
        echo "resumption: yes"
    else
        echo "resumption: no"
    fi
}

if row_on whoami; then
    for t in "${NAMES[@]}"; do
        port=$(free_port)
        trueip_base "$t" >"$OUT/trueip.toml"
        serve "$t-whoami" http "$port" "$WHOAMI_PATH" "${BIN[$t]}" serve --listen "127.0.0.1:$port" \
            "${TRUEIP_POLICY[@]}" --config "$OUT/trueip.toml"
        ROW_OF[$t-whoami]=whoami
    done
    ROW_OF[nginx-whoami]=whoami
    # nginx's whoami: realip, then `return 200` with a JSON body padded so that its whole
    # response is as long as trueip's, so wrk parses as many bytes from both.
    NGINX_WHOAMI_PORT=$(free_port)
    nginx_whoami() { # pad
        if [ -n "${PID[nginx-whoami]:-}" ]; then
            kill "${PID[nginx-whoami]}"
            wait "${PID[nginx-whoami]}" 2>/dev/null || true
        fi
        nginx_serve nginx-whoami http "$NGINX_WHOAMI_PORT" / "    server {
        listen 127.0.0.1:$NGINX_WHOAMI_PORT;
        $REALIP
        location / { default_type application/json; return 200 '{\"client_ip\":\"\$remote_addr\",\"direct_ip\":\"\$realip_remote_addr\",\"pad\":\"$1\"}\n'; }
    }"
    }
    read -r TRUEIP_WHOAMI_BYTES _ < <(response_size trueip-whoami)
    nginx_whoami ""
    read -r NGINX_BARE_BYTES _ < <(response_size nginx-whoami)
    PAD=$((TRUEIP_WHOAMI_BYTES - NGINX_BARE_BYTES))
    if [ "$PAD" -lt 0 ]; then PAD=0; fi
    # Content-Length may gain a digit with the padding.
    nginx_whoami "$(head -c "$PAD" /dev/zero | tr '\0' x)"
    read -r NGINX_WHOAMI_BYTES _ < <(response_size nginx-whoami)
    if [ "$NGINX_WHOAMI_BYTES" -ne "$TRUEIP_WHOAMI_BYTES" ]; then
        nginx_whoami "$(head -c $((PAD + TRUEIP_WHOAMI_BYTES - NGINX_WHOAMI_BYTES)) /dev/zero | tr '\0' x)"
    fi
    ROW_SERVERS[whoami]=nginx-whoami
    for t in "${NAMES[@]}"; do ROW_SERVERS[whoami]+=" $t-whoami"; done
fi

ALL=()
: >"$OUT/rows.txt"
for row in $ROWS; do
    read -ra names <<<"${ROW_SERVERS[$row]}"
    ALL+=("${names[@]}")
    printf '%s\t%s\t%s\n' "$row" "${LOAD[$row]}" "${ROW_SERVERS[$row]}" >>"$OUT/rows.txt"
done

url() { echo "${SCHEME[$1]}://127.0.0.1:${PORT[$1]}${URLPATH[$1]}"; }

# Sanity: each server answers 200; the sizes, TLS parameters and resumption go in the report.
: >"$OUT/sizes.txt"
for name in "${ALL[@]}"; do
    read -r bytes _ < <(response_size "$name") || true
    [[ "${bytes:-}" =~ ^[0-9]+$ ]] || { echo "bench/gateway.sh: $name failed its sanity request" >&2; exit 1; }
    echo "$name $bytes" >>"$OUT/sizes.txt"
    case ${ROW_OF[$name]} in
        tls-close | tls-resume) resumes "$name" >"$OUT/resume-$name.txt" ;;
        h2)
            h2load -n 10 -c 1 "$(url "$name")" >"$OUT/h2-sanity-$name.txt" 2>&1 || true
            if ! grep -q '^Application protocol: h2' "$OUT/h2-sanity-$name.txt" ||
                ! grep -q ' 10 succeeded' "$OUT/h2-sanity-$name.txt"; then
                echo "bench/gateway.sh: $name did not answer 10 requests over HTTP/2; see $OUT/h2-sanity-$name.txt" >&2
                exit 1
            fi
            ;;
    esac
done

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

seconds() { # 10s, 2m, 10 -> seconds
    case $1 in
        *m) echo $((${1%m} * 60)) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

# One load run against NAME for DURATION, as its row's LOAD says, raw output into FILE.
load() { # name duration file
    local name=$1 secs wrk_env=() close=() timed=()
    secs=$(seconds "$2")
    # wrk's own CPU time into FILE.time ("seconds user system"), where GNU time is: a round
    # whose server was not busy then shows whether wrk was (on the TLS rows that open a
    # connection per request, wrk makes a handshake of its own for each).
    if [ -x /usr/bin/time ]; then timed=(/usr/bin/time -f "%e %U %S" -o "$3.time"); fi
    case ${LOAD[${ROW_OF[$name]}]} in
        h2load)
            "${LOAD_GROUP[@]}" taskset -c "$OTHER_CPUS" timeout -k 5 $((secs + 30)) h2load -t1 -c"$CONNECTIONS" -m"$H2_STREAMS" \
                -D "$secs" --log-file "$3.log" -H "x-forwarded-for: $XFF" "$(url "$name")" >"$3" 2>&1
            return
            ;;
        close) close=(-H "Connection: close") ;;
        fresh) close=(-H "Connection: close") wrk_env=(WRK_SHIM_NO_RESUME=1 LD_PRELOAD="$SHIM") ;;
        pp2) close=(-H "Connection: close") wrk_env=(WRK_SHIM_PROXY_V2=1 LD_PRELOAD="$SHIM") ;;
    esac
    "${LOAD_GROUP[@]}" env "${wrk_env[@]}" taskset -c "$OTHER_CPUS" timeout -k 5 $((secs + 30)) \
        "${timed[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$secs"s --latency \
        -H "X-Forwarded-For: $XFF" "${close[@]}" "$(url "$name")" >"$3" 2>&1
}

# cpu.stat's periods, throttled periods and throttled nanoseconds of NAME's cgroup.
throttling() { # name
    awk '$1 == "nr_periods" {p = $2} $1 == "nr_throttled" {n = $2} $1 == "throttled_time" {t = $2}
        END {print p, n, t}' "$CGROUP/$1/cpu.stat"
}

run_load() { # name round
    local f="$OUT/load-$1-$2.txt" before after t0=() t1=()
    [ -z "$CPU_QUOTA" ] || read -ra t0 < <(throttling "$1")
    before=$(cpu_ticks "${PID[$1]}")
    load "$1" "$DURATION" "$f"
    after=$(cpu_ticks "${PID[$1]}")
    [ -z "$CPU_QUOTA" ] || read -ra t1 < <(throttling "$1")
    echo "$((after - before)) $(getconf CLK_TCK) $(cut -d' ' -f1 /proc/loadavg)" >"$OUT/cpu-$1-$2.txt"
    if [ -n "$CPU_QUOTA" ]; then
        echo "$((t1[0] - t0[0])) $((t1[1] - t0[1])) $((t1[2] - t0[2]))" >"$OUT/throttle-$1-$2.txt"
    fi
}

echo "warming up..." >&2
for name in "${ALL[@]}"; do
    load "$name" "$WARMUP" "$OUT/warmup-$name.txt"
done

# Round r runs each row's servers starting from the (r-1)-th, wrapping around.
rotated() { # round names...
    local r=$1
    shift
    local n=$# i
    local names=("$@")
    for ((i = 0; i < n; i++)); do echo "${names[$(((i + r - 1) % n))]}"; done
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS..." >&2
    for row in $ROWS; do
        read -ra names <<<"${ROW_SERVERS[$row]}"
        for name in $(rotated "$round" "${names[@]}"); do
            run_load "$name" "$round"
        done
    done
done

rss() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
for name in "${ALL[@]}"; do echo "$name $(rss "${PID[$name]}")"; done >"$OUT/rss.txt"

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo || true)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///' || true)
HAPROXY_VERSION=$("$HAPROXY" -v 2>&1 | awk 'NR == 1 {print $3}' || true)
OPENSSL_VERSION=$(openssl version 2>&1 | awk '{print $2}' || true)
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
H2LOAD_VERSION=$( (h2load --version 2>&1 || true) | awk 'NR == 1 {print $NF}')
{
    for t in "${NAMES[@]}"; do
        echo "$t ${BIN[$t]} ($("${BIN[$t]}" --version 2>&1 | head -1); defers: $([ -n "${DEFER_LINE[$t]}" ] && [ "$DEFER" = 1 ] && echo yes || echo no))"
    done
} >"$OUT/binaries.txt"

python3 - "$OUT" "$ROUNDS" "$CPU_QUOTA" "$CPU_PERIOD_US" <<EOF_PY
import re, statistics, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])
quota, period_us = (float(sys.argv[3]), int(sys.argv[4])) if sys.argv[3] else (None, None)
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "rows.txt")) if l.strip()]

def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n

def parse_wrk(t):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    errs = re.search(r"Socket errors:.*", t)
    reqs = int(re.search(r"(\d+) requests in", t).group(1))
    return rps, p50, p99, int(bad.group(1)) if bad else 0, errs.group(0) if errs else "", reqs

def parse_h2load(t, log):
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", t).group(1))
    done, ok, failed, errored, timeout = map(int, re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", t).groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t).groups()
    lat = sorted(int(l.split("\t")[2]) for l in open(log) if l.count("\t") >= 2)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")
    errs = f"{failed} failed, {errored} errored, {timeout} timeout" if failed or errored or timeout else ""
    return rps, pct(0.50), pct(0.99), done - int(codes[0]), errs, done

def parse(name, r, load):
    path = os.path.join(out, f"load-{name}-{r}.txt")
    t = open(path).read()
    if load == "h2load":
        rps, p50, p99, bad, errs, reqs = parse_h2load(t, path + ".log")
    else:
        rps, p50, p99, bad, errs, reqs = parse_wrk(t)
    ticks, hz, loadavg = open(os.path.join(out, f"cpu-{name}-{r}.txt")).read().split()
    cpu_us = int(ticks) / int(hz) * 1e6 / max(reqs, 1)
    busy = int(ticks) / int(hz) / $(seconds "$DURATION")
    # Under CPU_QUOTA: the share of the round's periods in which the server ran out of quota.
    throttled = float("nan")
    tpath = os.path.join(out, f"throttle-{name}-{r}.txt")
    if os.path.exists(tpath):
        periods, n, _ns = map(int, open(tpath).read().split())
        throttled = n / periods if periods else 0.0
    return rps, p50, p99, bad, errs, cpu_us, float(loadavg), busy, throttled

def pairs(name):
    return dict(l.split(maxsplit=1) for l in open(os.path.join(out, name)) if len(l.split()) >= 2)

rss = pairs("rss.txt")
sizes = pairs("sizes.txt")
binaries = pairs("binaries.txt")

def side(name, load):
    runs = [parse(name, r, load) for r in range(1, rounds + 1)]
    med = lambda i: statistics.median(r[i] for r in runs)
    bad = sum(r[3] for r in runs)
    errs = [r[4] for r in runs if r[4]]
    # The least disturbed round of each figure: on a shared machine a neighbour only ever
    # takes time away, so the best round is the nearest to what the server itself can do.
    best = dict(rps=max(r[0] for r in runs), p99=min(r[2] for r in runs), cpu=min(r[5] for r in runs))
    return dict(rps=med(0), p50=med(1), p99=med(2), cpu=med(5), rss=int(rss.get(name, 0)), bad=bad, best=best,
                errs=errs, all_rps=[round(r[0]) for r in runs], load=max(r[6] for r in runs), busy=med(7),
                throttled=med(8), busy_rounds=[r[7] for r in runs])

def note(name):
    parts = []
    for kind in ("tls", "resume"):
        p = os.path.join(out, f"{kind}-{name}.txt")
        if os.path.exists(p):
            parts.append(open(p).read().strip())
    return f" ({'; '.join(parts)})" if parts else ""

print(f"wrk $WRK_VERSION -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency (h2 row: h2load $H2LOAD_VERSION "
      f"-t1 -c$CONNECTIONS -m$H2_STREAMS -D $DURATION), X-Forwarded-For: $XFF; median of {rounds} interleaved "
      f"rounds (order rotated each round); {os.cpu_count()} CPUs ($CPU_MODEL); nginx $NGINX_VERSION "
      f"(worker_processes 1), HAProxy $HAPROXY_VERSION (nbthread 1), OpenSSL $OPENSSL_VERSION; trueip: "
      f"$THREADS_NOTE; servers on CPU $PROXY_CPU, load generator and upstream on CPU $OTHER_CPUS.")
if quota:
    print(f"Every server limited to {quota:g} of a CPU: its own cgroup, cpu.cfs_quota_us "
          f"{round(quota * period_us)} per cpu.cfs_period_us {period_us}; cpu.shares $CPU_SHARES for each "
          f"server's group and for the load generator's and upstream's.")
for t, b in binaries.items():
    print(f"- {t}: {b.strip()}")
print()

titles = {
    "proxy": "proxy: keep-alive, plain HTTP",
    "close": "close: a new connection per request (\`Connection: close\`), plain HTTP",
    "tls": "tls: TLS, keep-alive",
    "tls-close": "tls-close: TLS, a new connection and a full handshake per request (no resumption)",
    "tls-resume": "tls-resume: TLS, a new connection per request, resuming the session",
    "h2": "h2: HTTP/2 over TLS (h2load, -m$H2_STREAMS)",
    "proxy-v2": "proxy-v2: a new connection per request, each starting with a PROXY v2 header",
    "whoami": "whoami (diagnostic, no target): trueip GET $WHOAMI_PATH vs nginx \`return 200\` padded to the same size",
}
loads = []
summary = []
busy_rows = []
for row, load, names in rows:
    names = names.split()
    s = {n: side(n, load) for n in names}
    loads += [v["load"] for v in s.values()]
    label = lambda n: n[: -len(row) - 1]
    print(f"**{titles[row]}**")
    print()
    qhead, qrule = (" busy ÷ quota | throttled periods |", " ---: | ---: |") if quota else ("", "")
    print(f"| server | req/s | p50 ms | p99 ms | CPU µs/req | CPU busy |{qhead} peak RSS MiB | response bytes | req/s per round |")
    print(f"| --- | ---: | ---: | ---: | ---: | ---: |{qrule} ---: | ---: | --- |")
    for n in names:
        v = s[n]
        qcols = f" {v['busy'] / quota:.2f} | {v['throttled']:.2f} |" if quota else ""
        print(f"| {label(n)}{note(n)} | {v['rps']:,.0f} | {v['p50']:.2f} | {v['p99']:.2f} | {v['cpu']:.1f} | "
              f"{v['busy']:.2f} |{qcols} {v['rss']/1024:.1f} | {sizes.get(n, '?').strip()} | {v['all_rps']} |")
        if v["bad"] or v["errs"]:
            print(f"| {label(n)}: {v['bad']} non-2xx; {'; '.join(v['errs'])} | | | | | | | | |{' | |' if quota else ''}")
    print()
    if quota:
        busy_rows.append((row, [(label(n), s[n]) for n in names]))
    peers = [p for p in names if not p.startswith("trueip")]
    ours = [t for t in names if t.startswith("trueip")]
    ratios = [(t, p) for t in ours for p in peers]
    if len(ours) == 2:
        ratios.append((ours[0], ours[1]))
    print("| ratio | req/s | p50 | p99 | CPU per req | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for a, b in ratios:
        r = lambda k: (s[a][k] / s[b][k]) if s[b][k] else float("nan")
        print(f"| {label(a)} / {label(b)} | {r('rps'):.2f} | {r('p50'):.2f} | {r('p99'):.2f} | {r('cpu'):.2f} | {r('rss'):.2f} |")
        if b.startswith("nginx") or b.startswith("haproxy"):
            best = lambda k: s[a]["best"][k] / s[b]["best"][k] if s[b]["best"][k] else float("nan")
            summary.append((row, label(a), label(b), r("rps"), r("p99"), r("cpu"),
                            best("rps"), best("p99"), best("cpu")))
    print()

print("**Summary**: trueip / peer per row (target: req/s ≥ 1.00, p99 and CPU per request ≤ 1.00)")
print()
print("Medians of the rounds, then each server's best round (highest req/s, lowest p99 and CPU per")
print("request, each taken alone): a round that a neighbour on the machine slowed moves the median,")
print("not the best.")
print()
print("| row | ratio | req/s | p99 | CPU per req | best req/s | best p99 | best CPU per req |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for row, a, b, rps, p99, cpu, brps, bp99, bcpu in summary:
    if row == "whoami":
        continue
    print(f"| {row} | {a} / {b} | {rps:.2f} | {p99:.2f} | {cpu:.2f} | {brps:.2f} | {bp99:.2f} | {bcpu:.2f} |")
print()
if quota:
    # The figures above compare servers only if each was held at its quota: one below it
    # waited for something else (the load generator, the upstream, a neighbour on its CPU).
    print(f"**Under the limit** ({quota:g} of a CPU each): every server's CPU busy ÷ quota (median, and its "
          f"lowest round) and throttled periods (median share of the round's periods that ran out of quota). "
          f"A row is server-limited when every server's lowest round is at 0.90 of the quota or more.")
    print()
    print("| row | busy ÷ quota (lowest round) | throttled periods | server-limited |")
    print("| --- | --- | --- | --- |")
    for row, sides in busy_rows:
        busy = ", ".join(f"{n} {v['busy'] / quota:.2f} ({min(v['busy_rounds']) / quota:.2f})" for n, v in sides)
        thr = ", ".join(f"{n} {v['throttled']:.2f}" for n, v in sides)
        short = [n for n, v in sides if min(v["busy_rounds"]) < 0.9 * quota]
        print(f"| {row} | {busy} | {thr} | {'no: ' + ', '.join(short) if short else 'yes'} |")
    print()
print(f"Highest 1-minute load average seen during a run: {max(loads):.2f} on {os.cpu_count()} CPUs. "
      f"The benchmark keeps about two CPUs busy; well above that, other work shared the machine and "
      f"req/s and latency are noisy. CPU µs/req (the server's own user + system time per request) is "
      f"the steadier figure. CPU busy (median of the rounds) is that time over the round's length, in "
      f"CPUs: a server near 1.00 was what limited its round; one well below it waited, for a load "
      f"generator or upstream slowed by other work or for its own CPU, and its req/s and latency then "
      f"say more about the machine than about the server."
      + (f" Under CPU_QUOTA the ceiling is {quota:g}, not 1.00: read busy ÷ quota." if quota else ""))
EOF_PY
