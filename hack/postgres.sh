#!/usr/bin/env bash
# A throwaway PostgreSQL for development and tests of the cluster store: loopback only.
#
# Usage:
#   hack/postgres.sh start     create the cluster if absent, start it if stopped, make sure the
#                              test role and database exist; print the store URL on stdout
#   hack/postgres.sh stop      fast shutdown; nothing to do if it is not running
#   hack/postgres.sh restart   fast shutdown and start again (prints the URL)
#   hack/postgres.sh status    exit 0 and print the URL when running, else exit 3
#   hack/postgres.sh url       print the URL (running or not)
#   hack/postgres.sh ca        print the path of the CA certificate the server's TLS
#                              certificate is signed with (for sslmode=verify-full)
#   hack/postgres.sh destroy   stop and delete the whole cluster directory
#
#   export SMSMESH_TEST_POSTGRES_URL="$(hack/postgres.sh start)"   # then: make test
#
# Environment:
#   SMSMESH_PG_DIR      cluster directory: data/, unix socket, log (default ~/.cache/smsmesh/pg)
#   SMSMESH_PG_PORT     TCP port, bound on 127.0.0.1 only (default 55432)
#   SMSMESH_PG_BIN      directory of initdb and pg_ctl (default: newest /usr/lib/postgresql/*/bin)
#   SMSMESH_PG_TIMEOUT  seconds to wait for a start or stop (default 60)
#
# The cluster is a durability product's test bed, so it keeps fsync and synchronous_commit on.
# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` OS user
# (Debian's package creates it) and every server command runs through runuser; as anyone
# else it belongs to you. Superuser access is by unix socket only (the socket sits in the
# cluster directory, mode 0700); TCP on 127.0.0.1 takes the test role `smsmesh` with a
# password (scram-sha-256). The password is not a secret: this database holds test data only
# and listens on loopback only. TLS is on (plain TCP is still accepted) with a certificate
# for 127.0.0.1 signed by a throwaway CA made here, so clients can test sslmode=verify-full.
#
# Only stdout carries results (the URL); progress and errors go to stderr.
set -euo pipefail
{

DIR="${SMSMESH_PG_DIR:-$HOME/.cache/smsmesh/pg}"
PORT="${SMSMESH_PG_PORT:-55432}"
TIMEOUT="${SMSMESH_PG_TIMEOUT:-60}"
ROLE=smsmesh
PASSWORD=smsmesh
DATABASE=smsmesh_test
DATA="$DIR/data"
TLS="$DIR/tls"
URL="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"

say() { echo "hack/postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

find_bin() {
    if [[ -n "${SMSMESH_PG_BIN:-}" ]]; then
        echo "$SMSMESH_PG_BIN"
        return
    fi
    local newest
    newest="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/pg_ctl' 2>/dev/null \
        | sort -V | tail -n 1 || true)"
    [[ -n "$newest" ]] || die "no PostgreSQL server found under /usr/lib/postgresql;" \
        "install it (Debian: apt-get install -y postgresql) or set SMSMESH_PG_BIN"
    dirname "$newest"
}

BIN="$(find_bin)"
[[ -x "$BIN/pg_ctl" && -x "$BIN/initdb" ]] || die "$BIN has no pg_ctl/initdb"

if [[ "$(id -u)" == 0 ]]; then
    OWNER=postgres
    id -u "$OWNER" >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user"
    as_owner() { runuser -u "$OWNER" -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

pg_ctl() { as_owner "$BIN/pg_ctl" -D "$DATA" "$@"; }
psql_super() {
    as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres "$@"
}

running() { [[ -f "$DATA/PG_VERSION" ]] && pg_ctl status >/dev/null 2>&1; }

# The server's user must be able to reach its directory: grant search (x, not read) on the
# ancestors it cannot pass, e.g. /root (mode 0700) for the default directory as root.
make_reachable() {
    [[ "$OWNER" == postgres ]] || return 0
    local path="" part
    IFS=/ read -ra parts <<<"${DIR#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        [[ -d "$path" ]] || break
        if ! as_owner test -x "$path"; then
            say "granting search permission (o+x) on $path so that '$OWNER' can reach $DIR"
            chmod o+x "$path"
        fi
    done
}

init_cluster() {
    mkdir -p "$DIR"
    if [[ "$OWNER" == postgres ]]; then
        chown "$OWNER:" "$DIR"
    fi
    chmod 0700 "$DIR"
    make_reachable
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    # initdb into a scratch directory and rename it: an interrupted initdb leaves no
    # half-made cluster behind that a later start would trip over.
    local scratch="$DIR/data.init"
    rm -rf "$scratch"
    say "creating a cluster in $DATA"
    as_owner "$BIN/initdb" -D "$scratch" -U postgres --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    as_owner tee -a "$scratch/postgresql.conf" >/dev/null <<'EOF'

# -- hack/postgres.sh --------------------------------------------------------------------
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 300
log_min_messages = warning
# Port and socket directory are rewritten by every start (they follow the environment).
include 'smsmesh.conf'
EOF
    as_owner tee "$scratch/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
EOF
    as_owner mv "$scratch" "$DATA"
}

# A CA and a server certificate for 127.0.0.1, made once. Without openssl, TLS stays off.
make_tls() {
    [[ -f "$TLS/ca.crt" && -f "$TLS/server.crt" && -f "$TLS/server.key" ]] && return 0
    if ! command -v openssl >/dev/null; then
        say "openssl not found: the server runs without TLS"
        return 1
    fi
    say "making a throwaway CA and a TLS certificate for 127.0.0.1 in $TLS"
    rm -rf "$TLS"
    mkdir -p "$TLS"
    (
        cd "$TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=smsmesh test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.crt
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt
        rm -f server.csr server.ext ca.srl ca.key
        chmod 0600 server.key
        chmod 0644 ca.crt server.crt
    ) >"$DIR/tls.log" 2>&1 || { cat "$DIR/tls.log" >&2; die "making the TLS certificate failed"; }
    chmod 0755 "$TLS"
    if [[ "$OWNER" == postgres ]]; then
        chown -R "$OWNER:" "$TLS"
    fi
}

write_settings() {
    local tls="ssl = off"
    if make_tls; then
        tls="ssl = on
ssl_cert_file = '$TLS/server.crt'
ssl_key_file = '$TLS/server.key'"
    fi
    as_owner tee "$DATA/smsmesh.conf" >/dev/null <<EOF
port = $PORT
unix_socket_directories = '$DIR'
$tls
# smsmesh's messages table is a queue: vacuum must come by within seconds, not the
# default minute (README: PostgreSQL settings).
autovacuum_naptime = 5s
EOF
}

ensure_role_and_database() {
    psql_super -d postgres <<EOF
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$ROLE')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
SET password_encryption = 'scram-sha-256';
ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$DATABASE', '$ROLE')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE') \gexec
EOF
}

start() {
    init_cluster
    if running; then
        say "already running ($DATA)"
    else
        write_settings
        say "starting PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"
        pg_ctl start -w -t "$TIMEOUT" -l "$DIR/postgres.log" >/dev/null \
            || { tail -n 20 "$DIR/postgres.log" >&2 || true; die "start failed (log: $DIR/postgres.log)"; }
    fi
    ensure_role_and_database
    echo "$URL"
}

stop() {
    if running; then
        pg_ctl stop -m fast -w -t "$TIMEOUT" >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart)
        stop
        start
        ;;
    status)
        if running; then echo "$URL"; else exit 3; fi
        ;;
    url) echo "$URL" ;;
    ca)
        [[ -f "$TLS/ca.crt" ]] || die "no CA yet (start the cluster once)"
        echo "$TLS/ca.crt"
        ;;
    destroy)
        stop
        rm -rf "$DIR"
        say "removed $DIR"
        ;;
    *)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
exit 0
}
