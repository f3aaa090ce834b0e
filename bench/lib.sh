# Shared by the benchmark scripts (sourced, not run): the binaries they measure, and the
# servers they start on loopback, stopped when the script exits. Each script sets OUT (its
# log folder), NGINX and HAPROXY (the tools' paths) and declares the associative array PID
# before starting anything, then `trap cleanup EXIT`.

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:PORT accepts, at most WAIT_PORT_SECONDS (default 30: a server under
# valgrind needs longer); stops the script if PID exits first.
wait_port() { # port pid name
    local tries=$(( ${WAIT_PORT_SECONDS:-30} * 20 ))
    for _ in $(seq 1 "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "$3 exited before listening on $1; see $OUT/$3.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "$3 did not listen on $1; see $OUT/$3.log" >&2
    exit 1
}

# Starts CMD pinned to CPUS, logging to $OUT/NAME.log, and waits for it to listen on PORT.
start() { # name cpus port cmd...
    local name=$1 cpus=$2 port=$3
    shift 3
    taskset -c "$cpus" "$@" >"$OUT/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" "$name"
    PID[$name]=$pid
}

# The trueip binaries measured: TRUEIP_BIN (built from this tree into $TARGET_DIR when unset)
# as `trueip`, and TRUEIP_BIN_BEFORE, when set, as `trueip-before`, which runs beside it so
# a before/after comparison comes from one run. NAMES lists them; BIN maps a name to its path.
# TRUEIP_LIMITS and TRUEIP_LIMITS_BEFORE: TOML lines added to each one's `[limits]` (LIMITS
# maps a name to them), for one build against itself with a setting changed:
# TRUEIP_BIN_BEFORE=$TRUEIP_BIN TRUEIP_LIMITS_BEFORE='defer_accept = false'.
trueip_bins() {
    declare -gA LIMITS=([trueip]=${TRUEIP_LIMITS:-} [trueip-before]=${TRUEIP_LIMITS_BEFORE:-})
    if [ -z "${TRUEIP_BIN:-}" ]; then
        echo "building trueip (release)..." >&2
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p trueip-cli
        TRUEIP_BIN=$TARGET_DIR/release/trueip
    fi
    NAMES=(trueip)
    declare -gA BIN=([trueip]=$TRUEIP_BIN)
    if [ -n "${TRUEIP_BIN_BEFORE:-}" ]; then
        NAMES+=(trueip-before)
        BIN[trueip-before]=$TRUEIP_BIN_BEFORE
    fi
}

# nginx_conf NAME SERVER_BLOCK: one worker, no master, no access log, everything under
# $OUT/NAME.
nginx_conf() {
    local d="$OUT/$1"
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<NGINX
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
NGINX
}

# The upstream every server under test proxies to: nginx answering `return 200 "hello from
# upstream\n"` on UP_PORT (set here), pinned to CPUS.
start_upstream() { # cpus
    UP_PORT=$(free_port)
    nginx_conf upstream "    server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"hello from upstream\\n\"; } }"
    start upstream "$1" "$UP_PORT" "$NGINX" -p "$OUT/upstream" -c "$OUT/upstream/nginx.conf" -e "$OUT/upstream/error.log"
}

# One P-256 certificate for every TLS listener: cert + key for nginx and trueip (the key is
# PKCS#8), the two concatenated for HAProxy's `crt`.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>"$OUT/openssl.log"
    cat "$OUT/cert.pem" "$OUT/key.pem" >"$OUT/haproxy.pem"
}

# trueip's policy in every row: the same proxies trusted as nginx's REALIP.
TRUEIP_POLICY=(--trust 127.0.0.0/8 --trust 10.0.0.0/8 --strategy rightmost-untrusted --from xff)

# nginx's realip for a listener behind proxies on 127/8 and 10/8, reading X-Forwarded-For.
REALIP="set_real_ip_from 127.0.0.0/8; set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; real_ip_recursive on;"

# nginx_proxy LISTEN: nginx_conf's server block for nginx as the reverse proxy under test,
# listening as LISTEN says (its `listen ...;` and realip lines), with kept-alive connections
# to the upstream; it sets X-Real-IP, X-Forwarded-For and X-Forwarded-Proto.
nginx_proxy() {
    echo "    upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        $1
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }"
}

# haproxy_conf FILE BIND: HAProxy under test, one process, one thread, no log, `mode http`
# with `option forwardfor`, bound as BIND says (`127.0.0.1:PORT` and options), proxying to
# the upstream.
haproxy_conf() {
    cat >"$1" <<HAPROXY
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
    bind $2
    default_backend app
backend app
    server upstream 127.0.0.1:$UP_PORT
HAPROXY
}

# The client of the rows with a new connection per request (bench/instructions.sh and
# bench/syscalls.sh, PROTOCOL=close, proxy-v2, tls-close and tls-resume), a fixed count
# where wrk runs for a time:
#   python3 -c "$CLOSE_CLIENT" PORT TOTAL CONCURRENT close|proxy-v2|tls-close|tls-resume XFF
# sends exactly TOTAL requests, CONCURRENT connections open at a time, each a new connection
# with wrk's request (Host, X-Forwarded-For, `Connection: close`; proxy-v2: a PROXY v2
# header, TCP4 from 198.51.100.7, in the same write; tls-resume: over TLS, each connection
# offering the session, and its newest ticket, that the last one to finish left, as wrk
# does on row tls-resume; tls-close: over TLS, a full handshake each, as on row tls-close)
# read to the close; prints "requests: N succeeded, M failed" and
# the status codes as h2load does (and over TLS, how many connections resumed).
CLOSE_CLIENT='
import asyncio, socket, ssl, struct, sys
port, total, conc, pp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "proxy-v2"
tls, session, resume = None, None, sys.argv[4] == "tls-resume"
if sys.argv[4] in ("tls-resume", "tls-close"):
    class Resuming(ssl.SSLContext):
        def wrap_bio(self, *args, **kwargs):
            return super().wrap_bio(*args, session=session if resume else None, **kwargs)
    tls = Resuming(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Forwarded-For: " + sys.argv[5]
       + "\r\nConnection: close\r\n\r\n").encode()
if pp:
    addrs = socket.inet_aton("198.51.100.7") + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 5555, port)
    req = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs + req
left, ok, bad, resumed = total, 0, 0, 0
async def worker():
    global left, ok, bad, session, resumed
    while left > 0:
        left -= 1
        try:
            if tls:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="localhost")
            else:
                r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            data = await asyncio.wait_for(r.read(), 60)
            if tls:
                resumed += w.get_extra_info("ssl_object").session_reused
                session = w.get_extra_info("ssl_object").session
            w.close()
            if data.startswith(b"HTTP/1.1 200 "):
                ok += 1
            else:
                bad += 1
        except Exception:
            bad += 1
async def main():
    global left, ok, bad, resumed
    if tls:  # one connection first, not counted, so that every counted one can resume
        left, total_left = 1, left
        await worker()
        left, ok, bad, resumed = total_left, 0, 0, 0
    await asyncio.gather(*(worker() for _ in range(conc)))
asyncio.run(main())
print(f"requests: {total} total, {ok} succeeded, {bad} failed")
print(f"status codes: {ok} 2xx, 0 3xx, 0 4xx, {bad} 5xx")
if tls:
    print(f"resumed: {resumed} of {total}")
'

# The request headers Chrome sends with a navigation, as h2load arguments in BROWSER_HEADERS
# (13 lines, 762 bytes; `-H` replaces h2load's own user-agent and accept-encoding), for the
# scripts' BROWSER=1.
browser_headers() {
    BROWSER_HEADERS=(
        -H "user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
        -H "accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
        -H "accept-language: en-US,en;q=0.9,de;q=0.8"
        -H "accept-encoding: gzip, deflate, br, zstd"
        -H 'sec-ch-ua: "Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'
        -H "sec-ch-ua-mobile: ?0"
        -H 'sec-ch-ua-platform: "Linux"'
        -H "sec-fetch-site: same-origin"
        -H "sec-fetch-mode: navigate"
        -H "sec-fetch-user: ?1"
        -H "sec-fetch-dest: document"
        -H "upgrade-insecure-requests: 1"
        -H "cookie: _ga=GA1.1.1234567890.1733580000; session=3f9a1c2e7b5d4a8f9e0c1b2a3d4e5f60; theme=dark; consent=analytics%3Dno%2Cads%3Dno; _ga_ABCDEF1234=GS1.1.1733580000.1.1.1733580100.0.0.0"
    )
}
