#!/usr/bin/env bash
# 4 KiB one-time downloads from burnlink and secure_link downloads from nginx, alternating, one
# wrk run each per round, so both see the same machine in the same minute. Prints each pair's
# requests/s and p99, each server's CPU per request (and the user part of it), its preemptions
# and the machine's context switches per request (wrk's setup included), how burnlink's
# connections were split between its event loops midway through its run (and nginx's between
# its workers, counted the same way, so that counting costs both runs alike), and the counts
# of rounds in which burnlink's p99 was the lower. run.sh
# measures one pair per row; this shows how far a row's p99 moves from one run to the next.
#
#   benches/load/latency_ab.sh [ROUNDS=5] [CONCURRENCY=32] [DURATION_S=5]
#
# BURNLINK_BIN=path/to/burnlink measures that binary; BURNLINK_WORKERS is passed on.
# Needs: wrk, curl, nginx (with secure_link), python3.
# Bounded: ROUNDS pairs of wrk runs of DURATION_S; both servers are stopped by PID on exit.
set -euo pipefail
rounds="${1:-5}"; c="${2:-32}"; dur="${3:-5}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
need curl wrk nginx python3
bin="$(burnlink_bin "$top")"
scratch_beside_nginx
mkdir -p "$work/data"
head -c 4096 /dev/urandom > "$work/data/small.bin"
bl_port=$(free_port); ng_port=$(free_port)
secret="bench-secret-$RANDOM$RANDOM"
start_nginx "$ng_port" "$work/data" "$(secure_link_location "$secret")"
start_burnlink "$bl_port" "$work/data"
per_round=$((200000 * dur))
# A file of fresh links per round: wrk's threads take alternate lines and may not use as many
# each, so what one round used is not a prefix of one shared file.
"$bin" mint small.bin --count $((per_round * rounds)) --ttl 1h | sed "s#^http://127.0.0.1:$bl_port##" \
  | split -l "$per_round" -d -a 3 - "$work/bl_urls."
nginx_urls /small.bin $((per_round * 3)) "$secret" > "$work/ng_urls"
t=$(( c == 1 ? 1 : 2 ))
# CPU ticks of a server (burnlink's process, or nginx's workers): user + system, and user.
ticks() { for p in "$@"; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | awk '{ t += $1 } END { print t }'; }
user_ticks() { for p in "$@"; do awk '{ print $14 }' "/proc/$p/stat"; done | awk '{ t += $1 } END { print t }'; }
hz=$(getconf CLK_TCK)
# Context switches of the whole machine (server, wrk and the kernel's threads), since boot.
ctxt() { awk '/^ctxt/ { print $2 }' /proc/stat; }
# Involuntary context switches (preemptions) of all of a server's threads.
preempted() { for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done | awk '/^nonvoluntary_ctxt/ { n += $2 } END { print n }'; }
lower=0
for i in $(seq 1 "$rounds"); do
  urls="$work/bl_urls.$(printf '%03d' $((i - 1)))"
  t0=$(ticks "$bl_pid"); u0=$(user_ticks "$bl_pid"); s0=$(preempted "$bl_pid"); c0=$(ctxt)
  split_midway "$bl_pid" "$bl_port" "$dur" "$work/split" "$urls"
  split_pid=$!
  b=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$bl_port" -- "$urls" "$t" | grep RESULT)
  wait "$split_pid" || true
  t1=$(ticks "$bl_pid"); u1=$(user_ticks "$bl_pid"); s1=$(preempted "$bl_pid"); c1=$(ctxt); ng_workers=$(pgrep -P "$ng_pid")
  t2=$(ticks $ng_workers); u2=$(user_ticks $ng_workers); s2=$(preempted $ng_workers); c2=$(ctxt)
  split_midway "$ng_workers" "$ng_port" "$dur" "$work/ng_split" "$work/ng_urls"
  split_pid=$!
  n=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$ng_port" -- "$work/ng_urls" "$t" | grep RESULT)
  wait "$split_pid" || true
  t3=$(ticks $ng_workers); u3=$(user_ticks $ng_workers); s3=$(preempted $ng_workers); c3=$(ctxt)
  [ "$(echo "$b" | field refused)" = 0 ] || echo "   WARNING: burnlink refused requests (status 400 or more): $b"
  bp=$(echo "$b" | field p99_ms); np=$(echo "$n" | field p99_ms)
  awk -v i="$i" -v hz="$hz" -v bs=$((s1 - s0)) -v ns=$((s3 - s2)) -v bt=$((t1 - t0)) -v nt=$((t3 - t2)) -v bu=$((u1 - u0)) -v nu=$((u3 - u2)) -v bc=$((c1 - c0)) -v nc=$((c3 - c2)) -v bq="$(echo "$b" | field requests)" -v nq="$(echo "$n" | field requests)" -v br="$(echo "$b" | field rps)" -v nr="$(echo "$n" | field rps)" -v bp="$bp" -v np="$np" 'BEGIN {
    printf "round %d: burnlink %.1f req/s p99 %.3f ms %.1f us CPU/req (user %.1f) %.2f preempted/req %.2f switches/req   nginx %.1f req/s p99 %.3f ms %.1f us CPU/req (user %.1f) %.2f preempted/req %.2f switches/req   ratio %.2f, p99 %s\n",
      i, br, bp, bt * 1e6 / hz / bq, bu * 1e6 / hz / bq, bs / bq, bc / bq, nr, np, nt * 1e6 / hz / nq, nu * 1e6 / hz / nq, ns / nq, nc / nq, br / nr, (bp <= np ? "lower" : "higher") }'
  [ ! -s "$work/split" ] || echo "   burnlink's connections per event loop, midway: $(cat "$work/split")"
  [ ! -s "$work/ng_split" ] || echo "   nginx's connections per worker, midway: $(cat "$work/ng_split")"
  if awk -v b="$bp" -v n="$np" 'BEGIN { exit !(b <= n) }'; then lower=$((lower + 1)); fi
done
echo "burnlink's p99 was the lower in $lower of $rounds rounds"
