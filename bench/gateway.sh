#!/usr/bin/env bash
# trueip serve vs nginx vs HAProxy, side by side, on loopback, in one run.
#
#   bash bench/gateway.sh                          # builds target/release/trueip first
#   ROUNDS=5 DURATION=30s bash bench/gateway.sh
#   TRUEIP_BIN=/path/to/trueip bash bench/gateway.sh   # use a binary already built
#   TRUEIP_BIN=/new/trueip TRUEIP_BIN_BEFORE=/old/trueip bash bench/gateway.sh
#                                                  # before and after, interleaved in one run
#   ROWS="proxy tls" bash bench/gateway.sh          # a subset of the rows (default: all three)
#
# Three rows, each with identical wrk parameters (-t$WRK_THREADS -c$CONNECTIONS, keep-alive)
# and an X-Forwarded-For header from a peer on 127/8. The upstream is a separate nginx,
# `return 200 "hello from upstream\n"`, shared by every proxy of every row.
#
#   proxy: plain HTTP/1.1 in, plain HTTP/1.1 to the upstream over kept-alive connections.
#     nginx   realip (trusts 127.0.0.0/8 and 10.0.0.0/8, real_ip_recursive on), proxy_pass to
#             an upstream block with `keepalive 64`; sets X-Real-IP, X-Forwarded-For
#             ($proxy_add_x_forwarded_for: the received list plus the peer) and
#             X-Forwarded-Proto.
#     HAProxy `mode http`, `option forwardfor` (adds an X-Forwarded-For line with the peer),
#             `http-reuse always` (idle upstream connections shared by every client
#             connection), `nbthread 1`. No trust, no realip, no other header: HAProxy does
#             the least header work of the three.
#     trueip  `serve --upstream`, `--trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy
#             rightmost-untrusted --from xff`: resolves the client, strips and rewrites every
#             forwarding header (X-Real-IP, X-Forwarded-For, Forwarded, X-Forwarded-Proto/
#             -Host/-Port), pooled upstream connections, metrics kept.
#   tls:   the same three, each terminating TLS on its listener (trueip: rustls with the
#          ring provider, `[[listen]] tls = {...}`; nginx: `listen ... ssl` with
#          `ssl_protocols TLSv1.2 TLSv1.3` (nginx before 1.23.4 leaves TLS 1.3 out); HAProxy:
#          `bind ... ssl crt`) with one P-256 certificate made by openssl into $OUT, and
#          proxying to the same upstream over plain HTTP, as in the proxy row. wrk speaks
#          HTTP/1.1 over TLS (no ALPN); connections are kept alive, so a round pays
#          $CONNECTIONS handshakes and the rest is record encryption. The protocol and
#          cipher each server negotiated with the sanity request (Python's ssl, the same
#          OpenSSL as wrk, default settings) go in the report.
#   whoami (diagnostic; no target): nginx realip + `return 200` of a JSON body padded to
#          trueip's response size, vs trueip serve with no upstream, GET $WHOAMI_PATH.
#
# Fairness: nginx runs one worker process (`worker_processes 1`, `master_process off`);
# HAProxy one process with one thread (`nbthread 1`, foreground, no master); trueip one worker
# (`[limits] workers = 1`: one thread, one event loop). Every server under test is pinned to
# the same CPU ($PROXY_CPU, the last one) with taskset, wrk and the upstream to the others.
# None writes an access log. Rounds are interleaved: in each round every server of a row runs
# once, one after the other, and the order rotates by one from round to round, so drift on a
# shared machine hits every side alike. Each row's table reports every server's median round,
# its own CPU time per request (user + system from /proc/PID/stat, the figure least disturbed
# by neighbours) and its peak RSS (VmHWM) over the whole run, then ratios.
#
# TRUEIP_BIN_BEFORE (optional): a second trueip binary that runs in every row beside the first,
# interleaved with it, so a before/after comparison comes from one run ("trueip-before").
#
# Needs: nginx, haproxy, wrk, openssl, python3, taskset (util-linux), cargo. Prints markdown
# tables on stdout; configs, logs and raw wrk output go to $OUT (default target/bench-gateway).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}
WARMUP=${WARMUP:-2s}
WHOAMI_PATH=${WHOAMI_PATH:-/json}
ROWS=${ROWS:-proxy tls whoami}
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

for tool in nginx haproxy wrk openssl python3 taskset cargo; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "bench/gateway.sh: $tool not found (Debian packages: nginx haproxy wrk openssl python3 util-linux)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

row_on() { [[ " $ROWS " == *" $1 "* ]]; }

if [ -n "${TRUEIP_BIN:-}" ]; then
    TRUEIP=$TRUEIP_BIN
else
    echo "building trueip (release)..." >&2
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p trueip-cli
    TRUEIP=$TARGET_DIR/release/trueip
fi
TRUEIPS=(trueip)
declare -A TRUEIP_OF=([trueip]=$TRUEIP)
if [ -n "${TRUEIP_BIN_BEFORE:-}" ]; then
    TRUEIPS+=(trueip-before)
    TRUEIP_OF[trueip-before]=$TRUEIP_BIN_BEFORE
fi
for t in "${TRUEIPS[@]}"; do
    if ! "${TRUEIP_OF[$t]}" serve --help >/dev/null 2>&1; then
        echo "bench/gateway.sh: ${TRUEIP_OF[$t]} has no working 'serve' command" >&2
        exit 1
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

declare -A PID PORT URLPATH SCHEME
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
    PID[$name]=$pid
}

# A server under test: started on $PROXY_CPU, measured at SCHEME://127.0.0.1:PORT PATH.
serve() { # name scheme port path cmd...
    local name=$1
    SCHEME[$name]=$2
    PORT[$name]=$3
    URLPATH[$name]=$4
    shift 4
    start "$name" "$PROXY_CPU" "${PORT[$name]}" "$@"
}

nginx_serve() { # name scheme port path server-block
    nginx_conf "$1" "$5"
    serve "$1" "$2" "$3" "$4" "$NGINX" -p "$OUT/$1" -c "$OUT/$1/nginx.conf" -e "$OUT/$1/error.log"
}

UP_PORT=$(free_port)
nginx_conf upstream "    server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"hello from upstream\\n\"; } }"
start upstream "$OTHER_CPUS" "$UP_PORT" "$NGINX" -p "$OUT/upstream" -c "$OUT/upstream/nginx.conf" -e "$OUT/upstream/error.log"

# One P-256 certificate for every TLS listener: cert + key for nginx and trueip (the key is
# PKCS#8), the two concatenated for HAProxy's `crt`.
if row_on tls; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>"$OUT/openssl.log"
    cat "$OUT/cert.pem" "$OUT/key.pem" >"$OUT/haproxy.pem"
fi

REALIP="set_real_ip_from 127.0.0.0/8; set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; real_ip_recursive on;"
NGINX_UPSTREAM="upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }"
NGINX_PROXY_LOCATION="location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }"

# haproxy_serve NAME SCHEME PORT BIND_SUFFIX: one process, one thread, foreground, no log.
haproxy_serve() {
    local d="$OUT/$1"
    mkdir -p "$d"
    cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option forwardfor
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s
frontend bench
    bind 127.0.0.1:$3$4
    default_backend app
backend app
    server upstream 127.0.0.1:$UP_PORT
EOF
    "$HAPROXY" -c -q -f "$d/haproxy.cfg"
    serve "$1" "$2" "$3" / "$HAPROXY" -db -f "$d/haproxy.cfg"
}

# trueip: one worker, no access log (nginx and HAProxy have none either), diagnostics at warn.
TRUEIP_BASE="[limits]
workers = 1
[log]
access_log = false
level = \"warn\""
echo "$TRUEIP_BASE" >"$OUT/trueip.toml"
TRUEIP_POLICY=(--trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff)
unset RUST_LOG
THREADS_NOTE="workers = 1, access log off"

# Each row: its servers, in the order of the first round.
PROXY_ROW=() TLS_ROW=() WHOAMI_ROW=()

if row_on proxy; then
    port=$(free_port)
    nginx_serve nginx-proxy http "$port" / "    $NGINX_UPSTREAM
    server {
        listen 127.0.0.1:$port;
        $REALIP
        $NGINX_PROXY_LOCATION
    }"
    haproxy_serve haproxy-proxy http "$(free_port)" ""
    PROXY_ROW=(nginx-proxy haproxy-proxy)
    for t in "${TRUEIPS[@]}"; do
        port=$(free_port)
        serve "$t-proxy" http "$port" / "${TRUEIP_OF[$t]}" serve --listen "127.0.0.1:$port" \
            --upstream "http://127.0.0.1:$UP_PORT" "${TRUEIP_POLICY[@]}" --config "$OUT/trueip.toml"
        PROXY_ROW+=("$t-proxy")
    done
fi

if row_on tls; then
    port=$(free_port)
    nginx_serve nginx-tls https "$port" / "    $NGINX_UPSTREAM
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        $REALIP
        $NGINX_PROXY_LOCATION
    }"
    haproxy_serve haproxy-tls https "$(free_port)" " ssl crt $OUT/haproxy.pem"
    TLS_ROW=(nginx-tls haproxy-tls)
    for t in "${TRUEIPS[@]}"; do
        port=$(free_port)
        cat >"$OUT/$t-tls.toml" <<EOF
[[listen]]
address = "127.0.0.1:$port"
tls = { cert = "$OUT/cert.pem", key = "$OUT/key.pem" }
$TRUEIP_BASE
EOF
        # No --listen: it would replace the [[listen]] table with a plain HTTP listener.
        serve "$t-tls" https "$port" / "${TRUEIP_OF[$t]}" serve \
            --upstream "http://127.0.0.1:$UP_PORT" "${TRUEIP_POLICY[@]}" --config "$OUT/$t-tls.toml"
        TLS_ROW+=("$t-tls")
    done
fi

# One request: prints "<response bytes, head and body> <body bytes>"; fails unless 200.
# Over TLS, also writes the negotiated protocol and cipher to $OUT/tls-NAME.txt.
response_size() { # name
    local name=$1
    python3 - "$name" "${SCHEME[$name]}" "${PORT[$name]}" "${URLPATH[$name]}" "$XFF" "$OUT" <<'EOF'
import socket, ssl, sys
name, scheme, port, path, xff, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
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
EOF
}

if row_on whoami; then
    for t in "${TRUEIPS[@]}"; do
        port=$(free_port)
        serve "$t-whoami" http "$port" "$WHOAMI_PATH" "${TRUEIP_OF[$t]}" serve --listen "127.0.0.1:$port" \
            "${TRUEIP_POLICY[@]}" --config "$OUT/trueip.toml"
    done
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
    WHOAMI_ROW=(nginx-whoami)
    for t in "${TRUEIPS[@]}"; do WHOAMI_ROW+=("$t-whoami"); done
fi

ALL=("${PROXY_ROW[@]}" "${TLS_ROW[@]}" "${WHOAMI_ROW[@]}")
if [ "${#ALL[@]}" -eq 0 ]; then
    echo "bench/gateway.sh: ROWS='$ROWS' names no row (proxy, tls, whoami)" >&2
    exit 1
fi

# Sanity: each server answers 200; the sizes (and TLS parameters) go in the report.
: >"$OUT/sizes.txt"
for name in "${ALL[@]}"; do
    read -r bytes _ < <(response_size "$name") || true
    [[ "${bytes:-}" =~ ^[0-9]+$ ]] || { echo "bench/gateway.sh: $name failed its sanity request" >&2; exit 1; }
    echo "$name $bytes" >>"$OUT/sizes.txt"
done

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

url() { echo "${SCHEME[$1]}://127.0.0.1:${PORT[$1]}${URLPATH[$1]}"; }

run_wrk() { # name round
    local f="$OUT/wrk-$1-$2.txt" before after
    before=$(cpu_ticks "${PID[$1]}")
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -H "X-Forwarded-For: $XFF" "$(url "$1")" >"$f" 2>&1
    after=$(cpu_ticks "${PID[$1]}")
    echo "$((after - before)) $(getconf CLK_TCK) $(cut -d' ' -f1 /proc/loadavg)" >"$OUT/cpu-$1-$2.txt"
}

echo "warming up..." >&2
for name in "${ALL[@]}"; do
    taskset -c "$OTHER_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "X-Forwarded-For: $XFF" \
        "$(url "$name")" >/dev/null 2>&1
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
    for row in PROXY_ROW TLS_ROW WHOAMI_ROW; do
        declare -n servers=$row
        [ "${#servers[@]}" -gt 0 ] || continue
        for name in $(rotated "$round" "${servers[@]}"); do
            run_wrk "$name" "$round"
        done
        unset -n servers
    done
done

rss() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
for name in "${ALL[@]}"; do echo "$name $(rss "${PID[$name]}")"; done >"$OUT/rss.txt"

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo || true)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///' || true)
HAPROXY_VERSION=$("$HAPROXY" -v 2>&1 | awk 'NR == 1 {print $3}' || true)
OPENSSL_VERSION=$(openssl version 2>&1 | awk '{print $2}' || true)
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
{
    for t in "${TRUEIPS[@]}"; do
        echo "$t ${TRUEIP_OF[$t]} ($("${TRUEIP_OF[$t]}" --version 2>&1 | head -1))"
    done
} >"$OUT/binaries.txt"

python3 - "$OUT" "$ROUNDS" "${PROXY_ROW[*]}" "${TLS_ROW[*]}" "${WHOAMI_ROW[*]}" <<EOF
import re, statistics, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])
row_servers = {"proxy": sys.argv[3].split(), "tls": sys.argv[4].split(), "whoami": sys.argv[5].split()}

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

def pairs(name):
    return dict(l.split(maxsplit=1) for l in open(os.path.join(out, name)) if len(l.split()) >= 2)

rss = pairs("rss.txt")
sizes = pairs("sizes.txt")
binaries = pairs("binaries.txt")

def side(name):
    runs = [parse(os.path.join(out, f"wrk-{name}-{r}.txt")) for r in range(1, rounds + 1)]
    med = lambda i: statistics.median(r[i] for r in runs)
    bad = sum(r[3] for r in runs)
    errs = [r[4] for r in runs if r[4]]
    return dict(rps=med(0), p50=med(1), p99=med(2), cpu=med(5), rss=int(rss.get(name, 0)), bad=bad,
                errs=errs, all_rps=[round(r[0]) for r in runs], load=max(r[6] for r in runs))

def tls_note(name):
    p = os.path.join(out, f"tls-{name}.txt")
    return open(p).read().strip() if os.path.exists(p) else ""

print(f"wrk $WRK_VERSION, -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, keep-alive, "
      f"X-Forwarded-For: $XFF; median of {rounds} interleaved rounds (order rotated each round); "
      f"{os.cpu_count()} CPUs ($CPU_MODEL); nginx $NGINX_VERSION (worker_processes 1), "
      f"HAProxy $HAPROXY_VERSION (nbthread 1), OpenSSL $OPENSSL_VERSION; trueip: $THREADS_NOTE; "
      f"servers on CPU $PROXY_CPU, wrk and upstream on CPU $OTHER_CPUS.")
for t, b in binaries.items():
    print(f"- {t}: {b.strip()}")
print()

titles = {"proxy": "proxy to upstream (plain HTTP)",
          "tls": "TLS termination, proxy to upstream (plain HTTP)",
          "whoami": "whoami (diagnostic, no target): trueip GET $WHOAMI_PATH vs nginx \`return 200\` padded to the same size"}
loads = []
for row, names in row_servers.items():
    if not names:
        continue
    s = {n: side(n) for n in names}
    loads += [v["load"] for v in s.values()]
    print(f"**{titles[row]}**")
    print()
    print("| server | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | response bytes | req/s per round |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for n in names:
        v = s[n]
        extra = f" ({tls_note(n)})" if tls_note(n) else ""
        print(f"| {n}{extra} | {v['rps']:,.0f} | {v['p50']:.2f} | {v['p99']:.2f} | {v['cpu']:.1f} | "
              f"{v['rss']/1024:.1f} | {sizes.get(n, '?').strip()} | {v['all_rps']} |")
        if v["bad"] or v["errs"]:
            print(f"| {n}: {v['bad']} non-2xx; {'; '.join(v['errs'])} | | | | | | | |")
    print()
    peers = [p for p in names if not p.startswith("trueip")]
    ours = [t for t in names if t.startswith("trueip")]
    ratios = [(t, p) for t in ours for p in peers]
    if len(ours) == 2:
        ratios.append((ours[0], ours[1]))
    print("| ratio | req/s | p50 | p99 | CPU per req | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for a, b in ratios:
        r = lambda k: (s[a][k] / s[b][k]) if s[b][k] else float("nan")
        label = lambda n: n.rsplit("-", 1)[0]
        print(f"| {label(a)} / {label(b)} | {r('rps'):.2f} | {r('p50'):.2f} | {r('p99'):.2f} | {r('cpu'):.2f} | {r('rss'):.2f} |")
    print()

print(f"Highest 1-minute load average seen during a run: {max(loads):.2f} on {os.cpu_count()} CPUs. "
      f"The benchmark keeps about two CPUs busy; well above that, other work shared the machine and "
      f"req/s and latency are noisy. CPU µs/req (the server's own user + system time per request) is "
      f"the steadier figure.")
EOF
