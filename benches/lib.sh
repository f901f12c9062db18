# Shell helpers for the bench scripts (peers.sh, callgrind-ingest.sh, threads.sh, pair.sh);
# sourced, not run.

# The source secret the scripts configure and sign with.
BENCH_SECRET="bench-secret-0123456789"
# The body every bench sends: the load bench's GitHub push payload.
BENCH_BODY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures/push.json"

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Exits with a hint unless every command named is installed (each from the Debian package of
# the same name).
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "${0##*/}: needs $tool (apt-get install $tool)" >&2; exit 1; }
    done
}

# Waits (up to 60 s: valgrind starts slowly) until something listens on 127.0.0.1:$1.
await_port() {
    local port=$1
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "${0##*/}: nothing listens on 127.0.0.1:$port" >&2
    exit 1
}

# Writes to $1 a wrk script sending BENCH_BODY as GitHub would (both signatures, the push
# event) with an X-GitHub-Delivery unique per thread and request, so dedup never spares a
# commit.
write_github_lua() {
    local sha256 sha1
    sha256=$(openssl dgst -sha256 -hmac "$BENCH_SECRET" -r "$BENCH_BODY" | cut -d' ' -f1)
    sha1=$(openssl dgst -sha1 -hmac "$BENCH_SECRET" -r "$BENCH_BODY" | cut -d' ' -f1)
    cat >"$1" <<LUA
local body_file = io.open("$BENCH_BODY", "rb")
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "sha256=$sha256"
wrk.headers["X-Hub-Signature"] = "sha1=$sha1"
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end
local counter = 0
local prefix
function init(args)
  prefix = string.format("%08x-%d-%d-", os.time(), math.random(1, 1000000000), thread_id or 0)
end
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  return wrk.format()
end
LUA
}

# A relay config: one github source, no routes, the store under $2, listening on port $3.
write_relay_config() {
    cat >"$1" <<TOML
[server]
listen = "127.0.0.1:$3"
[storage]
path = "$2/hookrelay.redb"
[sources.github]
kind = "github"
secret = "$BENCH_SECRET"
TOML
}
