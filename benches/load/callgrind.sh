#!/usr/bin/env bash
# Instructions and heap allocations per 4 KiB one-time download, counted by valgrind's
# callgrind: repeatable on a shared machine, where wall-clock figures are not. The server runs
# under callgrind twice, serving N and 3N downloads (each a fresh link, one keep-alive
# connection, Python's http.client); the difference of the two runs, divided by 2N, is the
# cost of one download without start-up and shutdown.
#
#   benches/load/callgrind.sh [N=500]
#
# Valgrind before 3.21 does not know openat2 (Debian 12 has 3.19): the syscall fails there, so
# each download opens its file through the blocking pool's fallback instead of in line, and the
# figures are that path's. malloc_count.sh counts the allocations of the path really taken.
#
# BURNLINK_BIN=path/to/burnlink measures that binary instead of building one.
# Needs: valgrind, curl, python3. Bounded: 4N requests; the servers are stopped by PID.
set -euo pipefail
n="${1:-500}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c 4096 /dev/urandom > "$work/data/small.bin"

one_run() { # COUNT OUT
  local port
  port=$(free_port)
  export BURNLINK_KEYS="$("$bin" keygen)" BURNLINK_ROOT="$work/data" BURNLINK_BIND="127.0.0.1:$port" \
         BURNLINK_API_TOKENS=bench BURNLINK_LOG=warn BURNLINK_BROWSER_CONFIRM=false
  "$bin" mint small.bin --count "$1" --ttl 1h | sed "s#^http://127.0.0.1:$port##" > "$work/urls"
  (cd "$work" && exec valgrind --tool=callgrind --callgrind-out-file="$2" "$bin" serve \
     >"$work/out" 2>"$work/log") &
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  python3 "$here/sequential_get.py" "$port" "$work/urls"
  sleep 1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
one_run "$n" "$work/small.out"
one_run "$((3 * n))" "$work/large.out"
python3 "$here/callgrind_sum.py" "$work/small.out" "$work/large.out" "$((2 * n))"
