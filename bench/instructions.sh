#!/usr/bin/env bash
# User-space instructions per proxied request of `trueip serve`, counted by callgrind: a figure
# that a noisy shared machine does not move, for before/after comparisons of the request path.
#
#   bash bench/instructions.sh                     # builds target/release/trueip first
#   TRUEIP_BIN=/new/trueip TRUEIP_BIN_BEFORE=/old/trueip bash bench/instructions.sh
#   REQUESTS=50000 bash bench/instructions.sh
#   PROTOCOL=h2 bash bench/instructions.sh         # HTTP/2 over TLS, as bench/gateway.sh's h2 row
#   PROTOCOL=close bash bench/instructions.sh      # a new connection per request (row close)
#   PROTOCOL=proxy-v2 bash bench/instructions.sh   # the same with a PROXY v2 header (row proxy-v2)
#   PROTOCOL=tls-close bash bench/instructions.sh  # over TLS, a full handshake per request
#   PROTOCOL=tls-resume bash bench/instructions.sh # over TLS, each connection resuming
#   ACCESS_LOG=true bash bench/instructions.sh     # with the access log on (to a file in $OUT)
#
# The request and the gateway are bench/gateway.sh's proxy row: `trueip serve --upstream
# --trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff`,
# `[limits] workers = 1`, access log off, `X-Forwarded-For: 203.0.113.7, 10.0.0.1` from a peer
# on 127/8, kept-alive connections to an nginx upstream that answers `return 200`, all on
# loopback. The load is a fixed count: h2load --h1 sends exactly $REQUESTS requests over
# $CONNECTIONS kept-alive connections (h2load also sends user-agent and accept-encoding, which
# wrk does not). Counters are zeroed after $WARMUP requests (pools filled, caches and
# allocator warm), and dumped after the counted ones: startup and shutdown are not counted.
#
# PROTOCOL=h2: the gateway listens as on bench/gateway.sh's h2 row (`[[listen]] tls = {...}`,
# a P-256 certificate, rustls, ALPN h2) and h2load speaks HTTP/2 over TLS: $REQUESTS requests
# over $CONNECTIONS connections (default 10 here), $STREAMS concurrent streams each (default
# 10, the row's -m). Every h2load run opens new connections, so the counted requests include
# $CONNECTIONS full TLS handshakes (about a million instructions each: with the defaults,
# about 600 instructions per request of the count).
#
# PROTOCOL=close and PROTOCOL=proxy-v2: bench/gateway.sh's rows of those names, a new
# connection per request. The client is a small Python asyncio loop (bench/lib.sh's
# CLOSE_CLIENT, $CONNECTIONS at a time, default 50), since h2load does not connect again after a `Connection: close`: each
# connection sends wrk's request (Host, X-Forwarded-For, `Connection: close`; proxy-v2: a
# PROXY v2 header, TCP4 from 198.51.100.7, in the same write) and reads to the close, and
# every answer must be a 200. The listener for proxy-v2 is the row's (`[[listen]]
# proxy_protocol = "v2"`, `--proxy-protocol-from 127.0.0.0/8`). Only user space is counted:
# the system calls per connection are what `strace -c -f -p PID` (or `perf stat -e
# 'syscalls:sys_enter_*' -p PID`) shows.
#
# PROTOCOL=tls-close and PROTOCOL=tls-resume: the same client over TLS, to the h2 row's TLS
# listener (a P-256 certificate, rustls): tls-close makes a full handshake on every
# connection, tls-resume offers the session the last connection to finish left (as wrk does
# on bench/gateway.sh's row), and every counted connection must have resumed. The client is
# Python's ssl (OpenSSL, default settings: TLS 1.3, X25519).
#
# PROTOCOL=h2 with BROWSER=1: each request also carries the headers a browser sends with a
# navigation (bench/lib.sh's browser_headers: 13 lines, 762 bytes, a cookie among them).
#
# PROTOCOL=h2 also prints each count less h2's HPACK encoding of the answers
# (`h2::frame::headers::Headers::encode`, inclusive), and that ratio: h2 keeps every `Date`
# value it sends in the connection's table and compares each new answer's with all of them,
# one more each second, so that part grows with the run's wall time (a busier machine, a
# slower run under callgrind) and moved a count by up to 2 % between runs of one binary.
#
# Prints instructions per request for each binary and their ratio; the callgrind files stay in
# $OUT for `callgrind_annotate --inclusive=yes $OUT/NAME.callgrind.1` (part 1: the counted
# requests).
#
# Needs: valgrind (callgrind_control, vgdb), h2load (nghttp2-client), nginx, taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOCOL=${PROTOCOL:-h1}
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
case $PROTOCOL in
    h1) CONNECTIONS=${CONNECTIONS:-50} ;;
    h2) CONNECTIONS=${CONNECTIONS:-10} STREAMS=${STREAMS:-10} ;;
    close | proxy-v2 | tls-close | tls-resume) CONNECTIONS=${CONNECTIONS:-50} ;;
    *) echo "bench/instructions.sh: PROTOCOL is h1, h2, close, proxy-v2, tls-close or tls-resume, not $PROTOCOL" >&2; exit 1 ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/bench-instructions}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
if [ "$NCPU" -gt 1 ]; then OTHER_CPUS=${OTHER_CPUS:-0-$((NCPU - 2))}; else OTHER_CPUS=0; fi
XFF="203.0.113.7, 10.0.0.1"

for tool in valgrind callgrind_control h2load nginx taskset timeout openssl python3; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "bench/instructions.sh: $tool not found (Debian packages: valgrind nghttp2-client nginx util-linux coreutils openssl python3)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BROWSER=${BROWSER:-}
BROWSER_HEADERS=()
if [ -n "$BROWSER" ]; then
    [ "$PROTOCOL" = h2 ] || { echo "bench/instructions.sh: BROWSER=1 is for PROTOCOL=h2" >&2; exit 1; }
    browser_headers
fi
trueip_bins

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# A gateway under valgrind takes a while to listen.
WAIT_PORT_SECONDS=${WAIT_PORT_SECONDS:-60}
trap cleanup EXIT
declare -A PID
start_upstream "$OTHER_CPUS"

# h2: bench/gateway.sh's certificate, and its h2 row's listener (no --listen: it would
# replace the [[listen]] table with a plain HTTP listener).
LISTEN_TOML=""
if [ "$PROTOCOL" = h2 ] || [ "$PROTOCOL" = tls-close ] || [ "$PROTOCOL" = tls-resume ]; then
    make_cert
    LISTEN_TOML="[[listen]]
address = \"127.0.0.1:@PORT@\"
tls = { cert = \"$OUT/cert.pem\", key = \"$OUT/key.pem\" }"
fi
PROXY_FROM=()
if [ "$PROTOCOL" = proxy-v2 ]; then
    LISTEN_TOML="[[listen]]
address = \"127.0.0.1:@PORT@\"
proxy_protocol = \"v2\""
    PROXY_FROM=(--proxy-protocol-from 127.0.0.0/8)
fi

cat >"$OUT/trueip-base.toml" <<EOF
[limits]
workers = 1
[log]
access_log = ${ACCESS_LOG:-false}
level = "warn"
EOF
unset RUST_LOG

load() { # port count
    if [ "$PROTOCOL" = h2 ]; then
        # Bounded: a gateway that stops answering ends the run instead of hanging it.
        taskset -c "$OTHER_CPUS" timeout -k 5 600 h2load -n "$2" -c "$CONNECTIONS" -m "$STREAMS" \
            -H "x-forwarded-for: $XFF" "${BROWSER_HEADERS[@]}" "https://127.0.0.1:$1/"
        return
    fi
    if [ "$PROTOCOL" != h1 ]; then
        taskset -c "$OTHER_CPUS" timeout -k 5 600 python3 -c "$CLOSE_CLIENT" "$1" "$2" \
            "$CONNECTIONS" "$PROTOCOL" "$XFF"
        return
    fi
    taskset -c "$OTHER_CPUS" h2load --h1 -n "$2" -c "$CONNECTIONS" -m 1 -H "X-Forwarded-For: $XFF" \
        "http://127.0.0.1:$1/"
}

# Runs one binary under callgrind; prints its instructions per counted request.
measure() { # name
    local name=$1 port pid ok total
    port=$(free_port)
    local listen=(--listen "127.0.0.1:$port")
    if [ -n "$LISTEN_TOML" ]; then
        listen=()
        printf '%s\n' "${LISTEN_TOML//@PORT@/$port}" >"$OUT/$name.toml"
    fi
    sed "s/^workers = 1\$/workers = 1\n${LIMITS[$name]}/" "$OUT/trueip-base.toml" >>"$OUT/$name.toml"
    # --compress-strings=no: callgrind names a function in full only in the first file that
    # mentions it, and the counted part is not the first; without it, callgrind_annotate
    # cannot name most functions of $OUT/$name.callgrind.1.
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --compress-strings=no \
        --callgrind-out-file="$OUT/$name.callgrind" \
        "${BIN[$name]}" serve "${listen[@]}" --upstream "http://127.0.0.1:$UP_PORT" \
        "${TRUEIP_POLICY[@]}" "${PROXY_FROM[@]}" --config "$OUT/$name.toml" >"$OUT/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" "$name"
    load "$port" "$WARMUP" >"$OUT/$name-warmup.txt" 2>&1
    callgrind_control -z "$pid" >/dev/null 2>&1
    load "$port" "$REQUESTS" >"$OUT/$name-h2load.txt" 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if [ "$PROTOCOL" = h2 ] && ! grep -q '^Application protocol: h2' "$OUT/$name-h2load.txt"; then
        echo "bench/instructions.sh: $name did not speak HTTP/2; see $OUT/$name-h2load.txt" >&2
        exit 1
    fi
    ok=$(awk '/^requests:/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "succeeded,") print $i}' "$OUT/$name-h2load.txt")
    grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$OUT/$name-h2load.txt" || {
        echo "bench/instructions.sh: $name answered something other than 200; see $OUT/$name-h2load.txt" >&2
        exit 1
    }
    if [ "$PROTOCOL" = tls-resume ] && ! grep -q "^resumed: $REQUESTS of" "$OUT/$name-h2load.txt"; then
        echo "bench/instructions.sh: $name did not resume every session; see $OUT/$name-h2load.txt" >&2
        exit 1
    fi
    if [ "$ok" != "$REQUESTS" ]; then
        echo "bench/instructions.sh: $name: $ok of $REQUESTS requests succeeded; see $OUT/$name-h2load.txt" >&2
        exit 1
    fi
    # Part 1 is the dump after the counted requests (the file without a part number is the
    # one written at exit).
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$OUT/$name.callgrind.1")
    echo "$total" >"$OUT/$name.total"
    if [ "$PROTOCOL" = h2 ]; then
        # awk reads to the end: leaving early would end callgrind_annotate with SIGPIPE, which
        # pipefail makes this script's exit status.
        callgrind_annotate --inclusive=yes --threshold=100 "$OUT/$name.callgrind.1" 2>/dev/null |
            awk '/h2::frame::headers::Headers::encode \[/ && !found {gsub(",", "", $1); print $1; found = 1}' \
                >"$OUT/$name.hpack"
    fi
    echo "$name: $total instructions over $REQUESTS requests" >&2
}

for name in "${NAMES[@]}"; do measure "$name"; done

if [ "$PROTOCOL" = h2 ]; then
    CLIENT="h2load -n $REQUESTS -c $CONNECTIONS -m $STREAMS (HTTP/2 over TLS, ALPN h2; $CONNECTIONS TLS handshakes counted${BROWSER:+; the request headers of a browser})"
elif [ "$PROTOCOL" != h1 ]; then
    CLIENT="$REQUESTS new connections ($PROTOCOL; $CONNECTIONS at a time), one request each with Connection: close"
else
    CLIENT="h2load --h1 -n $REQUESTS -c $CONNECTIONS"
fi
echo "callgrind (valgrind $(valgrind --version | sed 's/valgrind-//')), $CLIENT after $WARMUP warm-up requests, X-Forwarded-For: $XFF; trueip: workers = 1, access_log = ${ACCESS_LOG:-false}"
echo
without_hpack() { # name: its count less h2's HPACK encoding
    echo $(($(cat "$OUT/$1.total") - $(cat "$OUT/$1.hpack" 2>/dev/null || echo 0)))
}
if [ "$PROTOCOL" = h2 ]; then
    echo "| binary | instructions per request | less h2's HPACK encoding |"
    echo "| --- | ---: | ---: |"
else
    echo "| binary | instructions per request |"
    echo "| --- | ---: |"
fi
for name in "${NAMES[@]}"; do
    if [ "$PROTOCOL" = h2 ]; then
        echo "| $name: ${BIN[$name]} | $(($(cat "$OUT/$name.total") / REQUESTS)) | $(($(without_hpack "$name") / REQUESTS)) |"
    else
        echo "| $name: ${BIN[$name]} | $(($(cat "$OUT/$name.total") / REQUESTS)) |"
    fi
done
if [ -n "${TRUEIP_BIN_BEFORE:-}" ]; then
    python3 -c "import sys; print(f'\ntrueip / trueip-before: {int(sys.argv[1]) / int(sys.argv[2]):.3f}')" \
        "$(cat "$OUT/trueip.total")" "$(cat "$OUT/trueip-before.total")"
    if [ "$PROTOCOL" = h2 ]; then
        python3 -c "import sys; print(f'less HPACK encoding: {int(sys.argv[1]) / int(sys.argv[2]):.3f}')" \
            "$(without_hpack trueip)" "$(without_hpack trueip-before)"
    fi
fi
