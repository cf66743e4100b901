#!/usr/bin/env bash
# A CPU profile (perf record -e cpu-clock -g) of the server while wrk spends fresh one-time
# links on a 4 KiB file, and the server's CPU time per request (from /proc, so it holds up
# better than requests/s when other work shares the cores).
#
#   benches/load/profile.sh OUT.data [CONCURRENCY=32] [DURATION_S=5]
#   perf report -i OUT.data --no-children --sort sym
#
# OUT.data "-" records no profile: only requests/s and CPU per request, undisturbed by perf (to
# compare two builds, run each a few times). It also prints how wrk's connections were split
# between the event loops, counted midway through the run, and each loop's CPU ticks. The two
# need not agree: a loop with 6 of 32 connections was as busy as one with 26
# (docs/benchmarks.md, "The sixth performance pass").
#
# BURNLINK_BIN=path/to/burnlink profiles that binary; BURNLINK_WORKERS is passed on.
# Needs: perf, wrk, curl, python3. Bounded: one wrk run; the server is stopped by PID.
set -euo pipefail
out="$1"; c="${2:-32}"; dur="${3:-5}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"
work="$(mktemp -d)"
bl_pid=""
trap '[ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c 4096 /dev/urandom > "$work/data/small.bin"
port=$(free_port)
start_burnlink "$port" "$work/data"
"$bin" mint small.bin --count $((200000 * dur)) --ttl 1h | sed "s#^http://127.0.0.1:$port##" > "$work/urls"
t=$(( c == 1 ? 1 : 2 ))
ticks() { awk '{ print $14 + $15 }' "/proc/$bl_pid/stat"; }
user_ticks() { awk '{ print $14 }' "/proc/$bl_pid/stat"; }
# Context switches of all the server's threads, voluntary (waits) and not (preemptions).
switches() { cat /proc/"$bl_pid"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary_ctxt/ { n += $2 } END { print v, n }'; }
before=$(ticks); ubefore=$(user_ticks); sbefore=$(switches)
rec=""
if [ "$out" != - ]; then
  perf record -e cpu-clock -g -o "$out" -p "$bl_pid" -- sleep "$((dur + 1))" 2>/dev/null &
  rec=$!
fi
split_midway "$bl_pid" "$port" "$dur" "$work/split" "$work/urls"
split_pid=$!
r=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$port" -- "$work/urls" "$t" | grep RESULT)
after=$(ticks); uafter=$(user_ticks); safter=$(switches)
[ -z "$rec" ] || wait "$rec" || true
wait "$split_pid" || true
echo "$r"
reqs=$(echo "$r" | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
awk -v t=$((after - before)) -v u=$((uafter - ubefore)) -v hz="$hz" -v n="$reqs" \
  'BEGIN { printf "server CPU per request: %.1f us (user %.1f + system %.1f, %d requests)\n",
           t / hz * 1e6 / n, u / hz * 1e6 / n, (t - u) / hz * 1e6 / n, n }'
echo "$sbefore $safter" | awk -v n="$reqs" \
  '{ printf "server context switches per request: %.2f voluntary, %.2f preempted\n", ($3 - $1) / n, ($4 - $2) / n }'
[ ! -s "$work/split" ] || echo "connections per event loop, midway: $(cat "$work/split")"
# How evenly the event loops shared the work (CPU ticks since start, per loop thread).
for f in /proc/"$bl_pid"/task/*/stat; do awk '$2 ~ /burnlink-loop/ { printf "%s %d\n", $2, $14 + $15 }' "$f"; done |
  sort | tr -d '()' | awk '{ s = s sep $1 " " $2; sep = ", " } END { if (s != "") print "event loops CPU ticks: " s }'
