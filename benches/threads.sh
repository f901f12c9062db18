#!/usr/bin/env bash
# Where a build's ingest time goes, thread by thread: runs a hookrelay binary with one GitHub
# source and no routes (the load bench's phase 2), drives it with wrk, and prints the rate,
# how busy the machine was, for each thread of the relay its CPU time and context switches
# per request, and the relay's group commits over the window (from its /metrics: how many,
# and the shares that took over 1, 2 and 4 ms, fsync included). For comparing two builds back to back on this noisy machine; the
# load bench (`cargo bench --bench load`) stays the reference for the figures.
#
#   benches/threads.sh [BINARY]          # default target/release/hookrelay
#   SECONDS_MEASURED=6 CONNECTIONS=64 THREADS=2 benches/threads.sh target/release/hookrelay
#
# Needs wrk, openssl and curl (apt-get install wrk openssl curl).

set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=benches/lib.sh
source "$here/lib.sh"

binary="${1:-$here/../target/release/hookrelay}"
seconds="${SECONDS_MEASURED:-6}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
require_tools wrk openssl curl
[ -x "$binary" ] || { echo "${0##*/}: no hookrelay binary at $binary (cargo build --release)" >&2; exit 1; }

work=$(mktemp -d)
port=$(free_port)
admin_port=$(free_port)
cat >"$work/hookrelay.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[storage]
path = "$work/store/hookrelay.redb"

[sources.github]
kind = "github"
secret = "$BENCH_SECRET"

[admin]
listen = "127.0.0.1:$admin_port"
EOF
write_github_lua "$work/github.lua"
RUST_LOG=warn "$binary" serve --config "$work/hookrelay.toml" 2>"$work/relay.log" &
relay=$!
trap 'kill "$relay" 2>/dev/null; wait "$relay" 2>/dev/null; rm -rf "$work"' EXIT
await_port "$port"
url="http://127.0.0.1:$port/hooks/github"
wrk -t"$threads" -c"$connections" -d2s -s "$work/github.lua" "$url" >/dev/null

# Per thread: name, CPU ticks (user + system), voluntary and involuntary context switches.
snapshot() {
    for task in /proc/"$relay"/task/*; do
        printf '%s %s %s %s\n' "$(tr ' ' '_' <"$task/comm")" \
            "$(awk '{print $14 + $15}' "$task/stat")" \
            "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status")" \
            "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$task/status")"
    done | sort -k1,1 -s
}
machine() { head -1 /proc/stat; }
# The commit-time histogram's buckets ("le count") and the count, from the relay's /metrics.
commits() {
    curl -sf "http://127.0.0.1:$admin_port/metrics" |
        sed -n 's/^hookrelay_store_commit_duration_seconds_bucket{le="\([^"]*\)"} /\1 /p;
                s/^hookrelay_store_commit_duration_seconds_count /count /p'
}

snapshot >"$work/before"
commits >"$work/commits-before"
machine_before=$(machine)
wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$work/github.lua" "$url" >"$work/wrk.out"
machine_after=$(machine)
snapshot >"$work/after"
commits >"$work/commits-after"

requests=$(awk '$2 == "requests" {print $1}' "$work/wrk.out")
rate=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
ticks=$(getconf CLK_TCK)
echo "$(basename "$binary"): $rate req/s over $connections connections ($requests requests in ${seconds} s)"
echo "$machine_before $machine_after" | awk '{
    busy0 = $2 + $3 + $4 + $7 + $8; idle0 = $5 + $6
    busy1 = $13 + $14 + $15 + $18 + $19; idle1 = $16 + $17
    printf "machine: %.2f of 2 cores busy\n", 2 * (busy1 - busy0) / ((busy1 - busy0) + (idle1 - idle0))
}'
printf '%-18s %12s %14s %16s\n' thread "CPU (cores)" "voluntary/req" "involuntary/req"
paste "$work/before" "$work/after" | awk -v n="$requests" -v s="$seconds" -v hz="$ticks" '{
    printf "%-18s %12.2f %14.3f %16.3f\n", $1, ($6 - $2) / hz / s, ($7 - $3) / n, ($8 - $4) / n
}'
paste "$work/commits-before" "$work/commits-after" | awk '
    $1 == "count" { total = $4 - $2; next }
    { within[$1] = $4 - $2 }
    END {
        if (total == 0) { print "commits: none in the window"; exit }
        printf "commits: %d (%.1f requests each); over 1 ms %.2f%%, over 2 ms %.2f%%, over 4 ms %.2f%%\n",
            total, total ? '"$requests"' / total : 0,
            100 * (total - within["0.001"]) / total, 100 * (total - within["0.002"]) / total,
            100 * (total - within["0.004"]) / total
    }'
