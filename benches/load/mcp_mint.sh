#!/usr/bin/env bash
# MCP create_download_link calls per second through /mcp (streamable HTTP, stateless JSON mode)
# on a release build, on loopback, with wrk POSTing JSON-RPC tools/call requests.
#
#   benches/load/mcp_mint.sh [SECONDS=10] [CONNECTIONS=32] [THREADS=2]
#
# Each request is a complete MCP tool call (bearer auth, Host guard, JSON-RPC, the sandbox stat,
# signing, counting, an audit line at BURNLINK_LOG=warn it is filtered). The server runs stateless,
# so no initialize round trip is needed per call; a real client also sends initialize once per
# connection, which this leaves out. Every response is checked for `"isError":false`: errors are
# counted and reported, not hidden. Bounded: one wrk run of SECONDS; the server is stopped at the end.
set -euo pipefail
secs="${1:-10}"
conns="${2:-32}"
threads="${3:-2}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

work="$(mktemp -d)"
bl_pid=""
trap '[ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data/reports"
head -c 4096 /dev/urandom > "$work/data/reports/q3.bin"

port=$(free_port)
start_burnlink "$port" "$work/data"


# One call by hand first, so a broken setup shows its error instead of a rate.
curl -sf -X POST "http://127.0.0.1:$port/mcp" -H 'Content-Type: application/json' \
     -H 'Accept: application/json, text/event-stream' -H 'Authorization: Bearer bench' \
     -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_download_link","arguments":{"path":"reports/q3.bin"}}}' \
     | grep -q '"isError":false' || { echo "a single MCP call failed" >&2; exit 1; }

wrk -t "$threads" -c "$conns" -d "${secs}s" --latency -s "$(dirname "$0")/mcp_call.lua" \
    "http://127.0.0.1:$port/mcp" -- bench reports/q3.bin
grep VmHWM "/proc/$bl_pid/status"
