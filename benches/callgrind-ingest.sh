#!/usr/bin/env bash
# Instructions per ingested event, counted by valgrind's callgrind: a figure that does not
# move with a noisy neighbour, for comparing two builds of the ingest path.
#
#   benches/callgrind-ingest.sh [SECONDS]    # default 20
#
# Runs the release binary under callgrind with one `kind = "github"` source and no routes
# (the load bench's phase 2), switches collection on once it is listening, drives it with
# `wrk` (16 connections, the bench's 1063-byte push body, a unique delivery id per request),
# switches collection off, and prints instructions per accepted event: for the whole process,
# for the store-writer thread, and for the rest (HTTP, verification, routing). Needs
# valgrind and wrk (apt-get install valgrind wrk).
set -euo pipefail

seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
body_file="$root/benches/fixtures/push.json"
secret="bench-secret-0123456789"
work=$(mktemp -d)
[[ -z ${KEEP:-} ]] || echo "work dir: $work"
trap 'kill "${relay_pid:-0}" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
for tool in valgrind callgrind_control wrk openssl; do
    command -v "$tool" >/dev/null || { echo "callgrind-ingest.sh: needs $tool (apt-get install valgrind wrk openssl)" >&2; exit 2; }
done

(cd "$root" && cargo build --release --quiet)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/hookrelay.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
[storage]
path = "$work/store/hookrelay.redb"
[sources.github]
kind = "github"
secret = "$secret"
EOF
signature=$(openssl dgst -sha256 -hmac "$secret" -r "$body_file" | cut -d' ' -f1)
cat >"$work/github.lua" <<EOF
local f = io.open("$body_file", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "sha256=$signature"
local n = 0
local prefix = string.format("%d-%d-", os.time(), math.random(1, 1000000000))
function request()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. n
  return wrk.format()
end
EOF

RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
    --callgrind-out-file="$work/cg.%p" "$root/target/release/hookrelay" serve \
    --config "$work/hookrelay.toml" 2>"$work/valgrind.log" &
relay_pid=$!
for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
callgrind_control -i on "$relay_pid" >/dev/null
wrk -t1 -c16 -d"${seconds}s" --timeout 60s -s "$work/github.lua" "http://127.0.0.1:$port/hooks/github" >"$work/wrk.out"
callgrind_control -i off "$relay_pid" >/dev/null
kill -INT "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
if grep -q -e "Non-2xx" -e "Socket errors" "$work/wrk.out"; then
    echo "callgrind-ingest.sh: the relay answered errors:" >&2
    cat "$work/wrk.out" >&2
    exit 1
fi
events=$(awk '/requests in/ {print $1}' "$work/wrk.out")
total=0
writer=0
for file in "$work"/cg.*; do
    ir=$(awk '/^totals:/ {print $2; exit}' "$file")
    [[ -n $ir ]] || continue
    total=$((total + ir))
    # The writer thread's profile is the one that ran the writer's loop.
    if grep -aq "hookrelay::store::writer::run" "$file"; then
        writer=$((writer + ir))
    fi
done
awk -v e="$events" -v t="$total" -v w="$writer" 'BEGIN {
    printf "%d events accepted under callgrind\n", e
    printf "instructions per event: %.0f total, %.0f store-writer thread, %.0f the rest\n", t / e, w / e, (t - w) / e
}'
