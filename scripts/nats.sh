#!/usr/bin/env bash
# A private NATS server with JetStream for tests and benchmarks, in a directory of its own.
#
#   scripts/nats.sh start DIR   starts nats-server on 127.0.0.1 and a free port with
#                               JetStream (file storage in DIR/jetstream); prints
#                               nats://127.0.0.1:PORT as the last line of stdout
#                               (progress goes to stderr) and returns once it accepts
#                               connections.
#   scripts/nats.sh stop DIR    stops that server and removes DIR.
#   scripts/nats.sh down DIR    kills it as a crash would (SIGKILL), keeping DIR.
#   scripts/nats.sh up DIR      starts it again on the same port and data.
#
# Debian's package nats-server (installed with apt-get when missing, as scripts/test.sh
# does for the other test prerequisites). No authentication: a private server on
# loopback, never a real one.
set -euo pipefail

die() {
    echo "nats.sh: $*" >&2
    exit 1
}
say() { echo "nats.sh: $*" >&2; }


# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: $0 start DIR | stop DIR | down DIR | up DIR" >&2
    exit 2
}

MARKER=.ingot-nats # written in DIR by `start`; the other verbs act only on such a DIR



# Runs the server of DIR on its port, in the background; waits until it accepts.
run_server() {
    local dir=$1 port
    port=$(cat "$dir/port")
    nohup nats-server -c "$dir/nats.conf" >>"$dir/nats.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
        if port_in_use "$port"; then
            return 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start() {
    local dir=$1 port tries started=""
    command -v nats-server >/dev/null 2>&1 || install_package nats-server nats-server
    command -v nats-server >/dev/null 2>&1 || die "nats-server was installed but is not on PATH"
    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty: give start a new (or empty) directory"
    : >"$dir/$MARKER"
    for tries in $(seq 1 20); do
        port=$((20000 + RANDOM % 12000)) # below Linux's ephemeral range (32768-)
        port_in_use "$port" && continue
        echo "$port" >"$dir/port"
        cat >"$dir/nats.conf" <<EOF
# scripts/nats.sh: a private server for Ingot's tests and benchmarks.
listen: 127.0.0.1:$port
server_name: ingot-test-$port
jetstream {
    store_dir: "$dir/jetstream"
    max_memory_store: 256MB
    max_file_store: 64GB # a ceiling for reservations, not space taken
}
EOF
        : >"$dir/nats.log"
        if run_server "$dir"; then
            started=yes
            break
        fi
        grep -q "address already in use" "$dir/nats.log" 2>/dev/null ||
            die "nats-server did not start (log: $dir/nats.log):"$'\n'"$(tail -n 20 "$dir/nats.log")"
        say "port $port is taken, trying another"
    done
    [ -n "$started" ] || die "found no free port for nats-server in $tries tries (log: $dir/nats.log)"
    say "nats-server $(nats-server --version | awk '{print $2}') with JetStream is up on 127.0.0.1:$port (data and log in $dir; stop it with: $0 stop $dir)"
    echo "nats://127.0.0.1:$port"
}

made_by_start() {
    [ -e "$1/$MARKER" ] || die "$1 was not made by '$0 start' (no $MARKER in it)"
}

kill_server() {
    local dir=$1 signal=$2 pid
    pid=$(cat "$dir/pid" 2>/dev/null) || return 0
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop() {
    local dir=$1
    [ -d "$dir" ] || die "$dir does not exist: nothing to stop"
    made_by_start "$dir"
    kill_server "$dir" TERM
    rm -rf "$dir"
}

down() {
    made_by_start "$1"
    kill_server "$1" KILL
}

up() {
    made_by_start "$1"
    run_server "$1" || die "nats-server did not start again (log: $1/nats.log):"$'\n'"$(tail -n 20 "$1/nats.log")"
}

[ $# -eq 2 ] || usage
case "$1" in
start) start "$2" ;;
stop) stop "$2" ;;
down) down "$2" ;;
up) up "$2" ;;
*) usage ;;
esac
