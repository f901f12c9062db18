#!/usr/bin/env bash
# Two relay runs side by side, driven in turn: the fairest A/B this noisy machine allows.
# Both relays are up for the whole run, each with its own store; each round drives A, then
# B, for the same time with the same wrk load (the load bench's phase 2: one GitHub source,
# no routes), so a slow patch of the host falls on both. Prints each round's rates and the
# median of the B/A ratios. A and B may be two builds, or one build with different
# environment variables (an experiment's switch).
#
#   benches/pair.sh BINARY_A BINARY_B
#   A_ENV="X=1" B_ENV="MY_SWITCH=on" ROUNDS=10 ROUND_SECONDS=3 benches/pair.sh BIN BIN
#   CONNECTIONS=16 benches/pair.sh target/release/hookrelay /tmp/other-build
#
# Swap A and B once: the second relay of a round sometimes gains from the first's warm caches.
# Needs wrk and openssl (apt-get install wrk openssl).

set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=benches/lib.sh
source "$here/lib.sh"

[ $# -eq 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
rounds="${ROUNDS:-10}"
seconds="${ROUND_SECONDS:-3}"
connections="${CONNECTIONS:-64}"
require_tools wrk openssl
for binary in "$1" "$2"; do
    [ -x "$binary" ] || { echo "${0##*/}: no hookrelay binary at $binary" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
write_github_lua "$work/github.lua"

# Starts relay $1 ("a" or "b") from binary $2 with the environment words in $3 on port $4.
# Not in a command substitution: the relay would hold its pipe open.
start_relay() {
    mkdir -p "$work/$1"
    write_relay_config "$work/$1/hookrelay.toml" "$work/$1/store" "$4"
    # shellcheck disable=SC2086 # the environment is a list of NAME=value words
    env $3 RUST_LOG=warn "$2" serve --config "$work/$1/hookrelay.toml" \
        >/dev/null 2>"$work/$1/relay.log" &
    pids+=($!)
}
port_a=$(free_port)
port_b=$(free_port)
start_relay a "$1" "${A_ENV:-}" "$port_a"
start_relay b "$2" "${B_ENV:-}" "$port_b"
await_port "$port_a"
await_port "$port_b"

# Requests per second of one wrk run against port $1 for $2 seconds.
drive() {
    wrk -t2 -c"$connections" -d"$2"s -s "$work/github.lua" "http://127.0.0.1:$1/hooks/github" |
        awk '/^Requests\/sec/ {print $2}'
}
drive "$port_a" 2 >/dev/null
drive "$port_b" 2 >/dev/null

echo "round  A req/s  B req/s  B/A"
for round in $(seq 1 "$rounds"); do
    a=$(drive "$port_a" "$seconds")
    b=$(drive "$port_b" "$seconds")
    echo "$round $a $b" | awk '{printf "%5d %8.0f %8.0f  %.3f\n", $1, $2, $3, $3 / $2}'
done | tee "$work/rounds"
awk '{print $4}' "$work/rounds" | sort -n |
    awk '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
         printf "median B/A over %d rounds: %.3f (%.3f-%.3f)\n", NR, m, r[1], r[NR]}'
