#!/usr/bin/env bash
# Side-by-side peer runs: hookrelay against adnanh/webhook and against the architecture every
# webhook-delivery service shares (each event and its delivery row committed to PostgreSQL
# before the answer), on the same machine, in one run, so the ratios mean something.
#
#   benches/peers.sh                 # 10 s per phase, 64 connections / clients
#   PEER_SECONDS=20 PEER_CONNECTIONS=128 benches/peers.sh
#
# Phases, each driven by `wrk` (HTTP) or `pgbench` (SQL) with the same 64 clients and the same
# 1063-byte GitHub push body (benches/fixtures/push.json):
#   1. hookrelay (release build): GitHub HMAC verified, event fsync'd to redb, no routes;
#      every request carries a unique X-GitHub-Delivery, so dedup never spares a commit.
#   2. adnanh/webhook (Debian `webhook`): a `payload-hmac-sha256` trigger rule on the same
#      body and signature, running `/bin/true` per hook (what it is built to do); nothing stored.
#   3. PostgreSQL (Debian), synchronous_commit = on, fsync = on: pgbench, each transaction
#      inserting the body as an event row and one queue row, as Svix, Convoy and Hook0 do
#      before they answer.
# Installs what it needs with apt-get when missing (run as root, or install webhook, wrk and
# postgresql yourself). Writes the table to target/peers-bench.md.
set -euo pipefail

seconds=${PEER_SECONDS:-10}
connections=${PEER_CONNECTIONS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
body_file=$BENCH_BODY
secret=$BENCH_SECRET
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n "${pg_bin:-}" && -d "$work/pg" ]]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

need() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v webhook >/dev/null || missing+=(webhook)
    command -v pgbench >/dev/null || missing+=(postgresql postgresql-contrib)
    command -v openssl >/dev/null || missing+=(openssl)
    if ((${#missing[@]})); then
        echo "installing ${missing[*]} (apt-get)"
        if [[ $(id -u) -ne 0 ]]; then
            echo "peers.sh: missing ${missing[*]}; run as root or apt-get install them" >&2
            exit 2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

# wrk's requests/s from its summary.
wrk_rate() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_latency() { awk -v p="$2" '$1 == p {print $2}' "$1"; }
# Non-2xx answers or socket errors make a phase void.
wrk_check() {
    if grep -q -e "Non-2xx" -e "Socket errors" "$1"; then
        echo "peers.sh: $2 answered errors:" >&2
        cat "$1" >&2
        exit 1
    fi
}

need
cores=$(nproc)
threads=$((cores < 2 ? 1 : 2))

write_github_lua "$work/github.lua"

echo "machine: $cores cores, $(uname -r); load generator and servers share them"
echo "$seconds s per phase, $connections connections, $(wc -c <"$body_file") B body"

echo "[1/3] hookrelay (release)"
(cd "$root" && cargo build --release --quiet)
relay_port=$(free_port)
mkdir -p "$work/relay"
write_relay_config "$work/relay/hookrelay.toml" "$work/relay/store" "$relay_port"
RUST_LOG=warn "$root/target/release/hookrelay" serve --config "$work/relay/hookrelay.toml" \
    2>"$work/relay/log" &
pids+=($!)
relay_pid=$!
await_port "$relay_port"
wrk -t"$threads" -c"$connections" -d2s -s "$work/github.lua" "http://127.0.0.1:$relay_port/hooks/github" >/dev/null
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$work/github.lua" \
    "http://127.0.0.1:$relay_port/hooks/github" >"$work/relay.wrk"
wrk_check "$work/relay.wrk" hookrelay
kill "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
relay_rate=$(wrk_rate "$work/relay.wrk")
echo "  $relay_rate requests/s"

echo "[2/3] adnanh/webhook $(webhook -version 2>&1 | head -1)"
hook_port=$(free_port)
cat >"$work/hooks.json" <<EOF
[{
  "id": "github",
  "execute-command": "/bin/true",
  "response-message": "accepted",
  "trigger-rule": {
    "match": {
      "type": "payload-hmac-sha256",
      "secret": "$secret",
      "parameter": { "source": "header", "name": "X-Hub-Signature-256" }
    }
  }
}]
EOF
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$hook_port" >"$work/webhook.log" 2>&1 &
pids+=($!)
hook_pid=$!
await_port "$hook_port"
wrk -t"$threads" -c"$connections" -d2s -s "$work/github.lua" "http://127.0.0.1:$hook_port/hooks/github" >/dev/null
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$work/github.lua" \
    "http://127.0.0.1:$hook_port/hooks/github" >"$work/webhook.wrk"
wrk_check "$work/webhook.wrk" "adnanh/webhook"
# A wrong signature must be refused, or the figure would not be of a verifying server.
bad=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Hub-Signature-256: sha256=00' \
    --data-binary @"$body_file" "http://127.0.0.1:$hook_port/hooks/github")
[[ $bad != 200 ]] || { echo "peers.sh: webhook accepted a bad signature; the rule is wrong" >&2; exit 1; }
kill "$hook_pid"
hook_rate=$(wrk_rate "$work/webhook.wrk")
echo "  $hook_rate requests/s (bad signature answered $bad)"

echo "[3/3] PostgreSQL $(pgbench --version | awk '{print $3}'), synchronous_commit = on"
pg_bin=$(dirname "$(readlink -f "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
chown postgres "$work"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -A trust -U bench >/dev/null
pg_port=$(free_port)
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-p $pg_port -k $work -c listen_addresses='' -c synchronous_commit=on -c fsync=on -c max_connections=$((connections + 10))" \
    start >/dev/null
psql_() { runuser -u postgres -- psql -h "$work" -p "$pg_port" -U bench -v ON_ERROR_STOP=1 -q "$@"; }
psql_ -d postgres -c "CREATE DATABASE relay"
psql_ -d relay <<'SQL'
CREATE TABLE events (id uuid PRIMARY KEY, source text NOT NULL, delivery_id text,
    received_at timestamptz NOT NULL DEFAULT now(), body bytea NOT NULL);
CREATE TABLE queue (event_id uuid NOT NULL REFERENCES events(id), sink text NOT NULL,
    due_at timestamptz NOT NULL DEFAULT now(), attempt int NOT NULL DEFAULT 1,
    PRIMARY KEY (event_id, sink));
CREATE INDEX queue_due ON queue (sink, due_at);
SQL
body_hex=$(od -An -v -tx1 "$body_file" | tr -d ' \n')
# One statement, one transaction, one synchronous commit: the event row and its queue row.
cat >"$work/insert.sql" <<EOF
\set n random(1, 2000000000)
WITH event AS (INSERT INTO events (id, source, delivery_id, body) VALUES (gen_random_uuid(), 'github', 'd-' || :client_id || '-' || :n, '\\x$body_hex'::bytea) RETURNING id) INSERT INTO queue (event_id, sink) SELECT id, 'audit' FROM event;
EOF
chmod 644 "$work/insert.sql"
runuser -u postgres -- pgbench -h "$work" -p "$pg_port" -U bench -n -c "$connections" -j "$threads" \
    -T 2 -f "$work/insert.sql" relay >/dev/null
runuser -u postgres -- pgbench -h "$work" -p "$pg_port" -U bench -n -c "$connections" -j "$threads" \
    -T "$seconds" -f "$work/insert.sql" relay >"$work/pgbench.out"
pg_rate=$(awk '/^tps = / {print $3}' "$work/pgbench.out")
pg_latency=$(awk '/^latency average/ {print $4}' "$work/pgbench.out")
echo "  $pg_rate transactions/s"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
report="$root/target/peers-bench.md"
mkdir -p "$root/target"
{
    echo "| server | rate /s | p50 | p99 | hookrelay is |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    echo "| hookrelay, signed + durable (redb, fsync) | $relay_rate | $(wrk_latency "$work/relay.wrk" 50%) | $(wrk_latency "$work/relay.wrk" 99%) | 1.00× |"
    echo "| adnanh/webhook, payload-hmac-sha256, nothing stored | $hook_rate | $(wrk_latency "$work/webhook.wrk" 50%) | $(wrk_latency "$work/webhook.wrk" 99%) | $(ratio "$relay_rate" "$hook_rate")× its rate |"
    echo "| PostgreSQL, event + queue row per transaction, synchronous commit | $pg_rate | avg ${pg_latency} ms | | $(ratio "$relay_rate" "$pg_rate")× its rate |"
} >"$report"
echo
cat "$report"
echo "written to $report"
