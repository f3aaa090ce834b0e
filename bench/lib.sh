# Shared by the benchmark scripts (sourced, not run): the servers they start on loopback,
# stopped when the script exits. Each script sets OUT (its log folder) and declares the
# associative array PID before starting anything, then `trap cleanup EXIT`.

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
