#!/usr/bin/env bash
# Two builds side by side on 4 KiB one-time downloads: wrk rounds alternating between a server
# running BIN_A and one running BIN_B (same file, same minute; the order flips each round), so
# that a busy machine weighs on both alike. Prints, per round and build, the requests/s, the
# p99 and how the server's connections were split between its event loops midway through the
# round. For comparing a change to the accept loop or the lane against the build before it.
#
#   benches/load/downloads_ab.sh BIN_A BIN_B [ROUNDS=10] [CONCURRENCY=32] [DURATION_S=5]
#
# Needs: wrk, curl, python3. Bounded: 2 x ROUNDS wrk runs of DURATION_S; both servers are
# stopped by PID on exit.
set -euo pipefail
a="$1"; b="$2"; rounds="${3:-10}"; c="${4:-32}"; dur="${5:-5}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$here/common.sh"
need curl wrk python3
per_round=$((200000 * dur))
if [ $((per_round * rounds)) -gt 10000000 ]; then
  echo "at most 10,000,000 links per server: lower ROUNDS or DURATION_S" >&2
  exit 2
fi
work="$(mktemp -d)"
pa=""; pb=""
trap 'kill $pa $pb 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c 4096 /dev/urandom > "$work/data/small.bin"
t=$(( c == 1 ? 1 : 2 ))
# Each server has its own key; its links are minted right after it starts, while the
# environment start_burnlink exported is its own.
port_a=$(free_port); bin="$a"; start_burnlink "$port_a" "$work/data"; pa=$bl_pid
"$a" mint small.bin --count $((per_round * rounds)) --ttl 1h | sed "s#^http://127.0.0.1:$port_a##" \
  | split -l "$per_round" -d -a 3 - "$work/a."
port_b=$(free_port); bin="$b"; start_burnlink "$port_b" "$work/data"; pb=$bl_pid
"$b" mint small.bin --count $((per_round * rounds)) --ttl 1h | sed "s#^http://127.0.0.1:$port_b##" \
  | split -l "$per_round" -d -a 3 - "$work/b."
bl_pid=""
# One wrk run against the server on PORT (process PID) with the links in URLS.
one() { # PORT PID URLS
  split_midway "$2" "$1" "$dur" "$work/split" "$3"
  local split_pid=$! r
  r=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$1" -- "$3" "$t" | grep RESULT)
  wait "$split_pid" || true
  [ "$(echo "$r" | field refused)" = 0 ] || echo "   WARNING: refused requests (status 400 or more): $r" >&2
  printf '%s req/s, p99 %s ms, split %s' "$(echo "$r" | field rps)" "$(echo "$r" | field p99_ms)" "$(cat "$work/split")"
}
for i in $(seq 1 "$rounds"); do
  f="$(printf '%03d' $((i - 1)))"
  if [ $((i % 2)) = 1 ]; then
    ra=$(one "$port_a" "$pa" "$work/a.$f"); rb=$(one "$port_b" "$pb" "$work/b.$f")
  else
    rb=$(one "$port_b" "$pb" "$work/b.$f"); ra=$(one "$port_a" "$pa" "$work/a.$f")
  fi
  echo "round $i: A $ra   B $rb"
done
