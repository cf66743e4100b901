#!/usr/bin/env bash
# One large download at a time from burnlink and from nginx (plain static file, `sendfile on`,
# `tcp_nopush on`), alternating, so both see the same machine in the same minute. Prints each
# pair's MB/s (curl's), their ratio, and the burnlink server's CPU time for its download.
#
#   benches/load/download_ab.sh [RUNS=5] [SIZE_MIB=1024]
#
# BURNLINK_BIN=path/to/burnlink measures that binary instead of building one (to compare two
# builds, run the script once with each). Needs: curl, nginx, python3.
# Bounded: RUNS pairs, each download capped at 120 s; both servers are stopped by PID on exit.
set -euo pipefail
runs="${1:-5}"
size_mib="${2:-1024}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
need curl nginx python3
bin="$(burnlink_bin "$top")"
scratch_beside_nginx
mkdir -p "$work/data"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/data/big.bin"
cat "$work/data/big.bin" > /dev/null   # page cache: measure the servers, not the disk

bl_port=$(free_port); ng_port=$(free_port)
start_nginx "$ng_port" "$work/data"
export BURNLINK_MAX_DOWNLOAD_BYTES=$((size_mib * 1024 * 1024 + 1))
start_burnlink "$bl_port" "$work/data"
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$bl_pid/stat"; }
for _ in $(seq 1 "$runs"); do
  url="$("$bin" mint big.bin)"
  before=$(cpu_ms)
  b=$(curl -s --max-time 120 -o /dev/null -w '%{speed_download}' "$url")
  after=$(cpu_ms)
  n=$(curl -s --max-time 120 -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$ng_port/big.bin")
  awk -v b="$b" -v n="$n" -v cpu=$((after - before)) 'BEGIN {
    printf "burnlink %.0f MB/s (server CPU %d ms)   nginx %.0f MB/s   ratio %.2f\n", b / 1e6, cpu, n / 1e6, b / n }'
done
