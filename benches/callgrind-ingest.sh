#!/usr/bin/env bash
# Instructions per ingested event, counted by valgrind's callgrind: a figure that does not
# move with a noisy neighbour, for comparing two builds of the ingest path.
#
#   benches/callgrind-ingest.sh [SECONDS]    # default 20
#   HOOKRELAY_BIN=path/to/hookrelay benches/callgrind-ingest.sh   # another build
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
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
work=$(mktemp -d)
[[ -z ${KEEP:-} ]] || echo "work dir: $work"
trap 'kill "${relay_pid:-0}" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
for tool in valgrind callgrind_control wrk openssl; do
    command -v "$tool" >/dev/null || { echo "callgrind-ingest.sh: needs $tool (apt-get install valgrind wrk openssl)" >&2; exit 2; }
done

# HOOKRELAY_BIN measures another build (e.g. one made with other profile settings).
bin=${HOOKRELAY_BIN:-}
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release --quiet)
    bin="$root/target/release/hookrelay"
fi
port=$(free_port)
write_relay_config "$work/hookrelay.toml" "$work/store" "$port"
write_github_lua "$work/github.lua"

RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
    --callgrind-out-file="$work/cg.%p" "$bin" serve \
    --config "$work/hookrelay.toml" 2>"$work/valgrind.log" &
relay_pid=$!
await_port "$port"
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
    # The writer thread is the one that syncs the file (function names may be inlined away).
    if grep -aq "fdatasync" "$file"; then
        writer=$((writer + ir))
    fi
done
awk -v e="$events" -v t="$total" -v w="$writer" 'BEGIN {
    printf "%d events accepted under callgrind\n", e
    printf "instructions per event: %.0f total, %.0f store-writer thread, %.0f the rest\n", t / e, w / e, (t - w) / e
}'
