#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks, in a directory of its own.
#
#   scripts/postgres.sh start DIR   initdb in DIR, start the server on 127.0.0.1 and a
#                                   free port, create the database `ingot`; prints
#                                   postgres://ingot@127.0.0.1:PORT/ingot as the last line
#                                   of stdout (progress goes to stderr) and returns once
#                                   the server accepts connections.
#   scripts/postgres.sh stop DIR    stops that server (fast shutdown) and removes DIR.
#   scripts/postgres.sh down DIR    stops it as a crash would (immediate shutdown: no
#                                   checkpoint, open connections cut), keeping DIR.
#   scripts/postgres.sh up DIR      starts it again on the same port (crash recovery
#                                   replays the WAL); returns once it accepts connections.
#
# Debian's packages (installed with apt-get when missing, as scripts/test.sh does for
# the other test prerequisites). PostgreSQL refuses to run as root: run as root, the
# server runs as the system user `ingot-test` (created if needed; INGOT_PG_OS_USER picks
# another), otherwise as the calling user. It listens on 127.0.0.1 only, its unix socket
# is in DIR, and the role `ingot` (superuser of this throwaway cluster, so tests can
# create a database each) logs in without a password (trust) — fine for a private
# server, never for a real one. fsync stays on: durability is what the tests check.
set -euo pipefail

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}
say() { echo "postgres.sh: $*" >&2; }


# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    echo "usage: $0 start DIR | stop DIR | down DIR | up DIR" >&2
    exit 2
}

ROLE=ingot
DATABASE=ingot
MARKER=.ingot-postgres # written in DIR by `start`; `stop` removes only such a DIR

# The directory of Debian's server binaries (initdb, pg_ctl, postgres), newest version.
bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}


# Runs a command as the server's OS user (the owner of DIR).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$OS_USER" -- "$@"
    else
        "$@"
    fi
}

# The system user that owns the server when we run as root.
ensure_os_user() {
    if [ "$(id -u)" -ne 0 ]; then
        OS_USER=$(id -un)
        return
    fi
    OS_USER=${INGOT_PG_OS_USER:-ingot-test}
    if ! id -u "$OS_USER" >/dev/null 2>&1; then
        say "creating the system user $OS_USER to run PostgreSQL (it refuses to run as root)"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$OS_USER" ||
            die "could not create the system user $OS_USER: create it yourself, or set INGOT_PG_OS_USER to an existing unprivileged user"
    fi
}


start() {
    local dir=$1 bin port tries started=""
    bin=$(bindir)
    if [ -z "$bin" ]; then
        install_package postgresql PostgreSQL
        bin=$(bindir)
        [ -n "$bin" ] || die "PostgreSQL was installed but initdb is nowhere to be found (looked in /usr/lib/postgresql/*/bin and PATH)"
    fi
    ensure_os_user

    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty: give start a new (or empty) directory"
    : >"$dir/$MARKER"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$OS_USER" "$dir"
        runuser -u "$OS_USER" -- test -w "$dir" ||
            die "$OS_USER cannot write to $dir (a parent directory is closed to it?): use a directory under /tmp, e.g. \$(mktemp -d)"
    fi
    cd "$dir" # the server's user must be able to stand in its working directory

    say "initdb in $dir/data ($("$bin/postgres" --version), as $OS_USER)"
    as_owner "$bin/initdb" -D "$dir/data" -U "$ROLE" --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 ||
        die "initdb failed (log: $dir/initdb.log):"$'\n'"$(tail -n 20 "$dir/initdb.log")"
    cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/postgres.sh: a private server for Ingot's tests and benchmarks.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
EOF

    for tries in $(seq 1 20); do
        port=$((20000 + RANDOM % 12000)) # below Linux's ephemeral range (32768-)
        port_in_use "$port" && continue
        as_owner truncate -s 0 "$dir/postgres.log" 2>/dev/null || true
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "-p $port" start >/dev/null 2>&1; then
            started=yes
            break
        fi
        # Another process may have taken the port between the check and the bind: retry.
        grep -q "could not bind\|Address already in use\|could not create any TCP/IP sockets" "$dir/postgres.log" 2>/dev/null ||
            die "PostgreSQL did not start (log: $dir/postgres.log):"$'\n'"$(tail -n 20 "$dir/postgres.log")"
        say "port $port is taken, trying another"
    done
    [ -n "$started" ] || die "found no free port for PostgreSQL in $tries tries; is the machine out of ports? (log: $dir/postgres.log)"
    echo "$port" >"$dir/port"

    local ok=""
    for _ in $(seq 1 100); do
        if pg_ready "$bin" "$port"; then
            ok=yes
            break
        fi
        sleep 0.1
    done
    if [ -z "$ok" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        die "PostgreSQL started but does not accept connections on 127.0.0.1:$port (log: $dir/postgres.log)"
    fi
    if ! as_owner "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U "$ROLE" -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE $DATABASE OWNER $ROLE" >"$dir/createdb.log" 2>&1; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        die "could not create the database $DATABASE:"$'\n'"$(cat "$dir/createdb.log")"
    fi
    say "PostgreSQL is up on 127.0.0.1:$port (data and log in $dir; stop it with: $0 stop $dir)"
    echo "postgres://$ROLE@127.0.0.1:$port/$DATABASE"
}

pg_ready() {
    local isready=$1/pg_isready
    [ -x "$isready" ] || isready=pg_isready
    "$isready" -q -h 127.0.0.1 -p "$2" -d postgres -U "$ROLE"
}

stop() {
    local dir=$1 bin
    [ -d "$dir" ] || die "$dir does not exist: nothing to stop"
    [ -e "$dir/$MARKER" ] || die "$dir was not made by '$0 start' (no $MARKER in it): refusing to stop or remove it"
    OS_USER=$(stat -c %U "$dir")
    if [ -e "$dir/data/postmaster.pid" ]; then
        bin=$(bindir)
        [ -n "$bin" ] || die "cannot find pg_ctl to stop the server in $dir"
        (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null) ||
            say "pg_ctl stop failed (server already gone?); removing $dir anyway"
    fi
    rm -rf "$dir"
}

# Checks that DIR is a server made by `start`; sets OS_USER and bin.
made_by_start() {
    [ -e "$1/$MARKER" ] || die "$1 was not made by '$0 start' (no $MARKER in it)"
    OS_USER=$(stat -c %U "$1")
    bin=$(bindir)
    [ -n "$bin" ] || die "cannot find PostgreSQL's pg_ctl"
}

down() {
    local dir=$1 bin
    made_by_start "$dir"
    (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null) ||
        die "pg_ctl stop failed (is the server in $dir running?)"
}

up() {
    local dir=$1 bin port
    made_by_start "$dir"
    port=$(cat "$dir/port")
    (cd "$dir" && as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "-p $port" start >/dev/null) ||
        die "PostgreSQL did not start again (log: $dir/postgres.log):"$'\n'"$(tail -n 20 "$dir/postgres.log")"
    for _ in $(seq 1 100); do
        pg_ready "$bin" "$port" && return 0
        sleep 0.1
    done
    die "PostgreSQL restarted but does not accept connections on 127.0.0.1:$port (log: $dir/postgres.log)"
}

[ $# -eq 2 ] || usage
case "$1" in
start) start "$2" ;;
stop) stop "$2" ;;
down) down "$2" ;;
up) up "$2" ;;
*) usage ;;
esac
