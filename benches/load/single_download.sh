#!/usr/bin/env bash
# One-time downloads of one large file with curl through a release build, on loopback.
# Prints curl's speed per run and the server's peak resident memory (VmHWM).
#
#   benches/load/single_download.sh [RUNS=5] [SIZE_MIB=1024]
#
# Bounded: RUNS downloads, each with a 120 s cap; the server is stopped at the end.
set -euo pipefail
runs="${1:-5}"
size_mib="${2:-1024}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"

work="$(mktemp -d)"
bl_pid=""
trap '[ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/data/big.bin"
cat "$work/data/big.bin" > /dev/null   # into the page cache: measure the server, not the disk

port=$(free_port)
export BURNLINK_MAX_DOWNLOAD_BYTES=$((size_mib * 1024 * 1024 + 1))
start_burnlink "$port" "$work/data"

for i in $(seq 1 "$runs"); do
  url="$("$bin" mint big.bin)"
  curl -s --max-time 120 -o /dev/null \
       -w "run $i: %{size_download} bytes in %{time_total}s = %{speed_download} B/s\n" "$url"
done
grep VmHWM "/proc/$bl_pid/status"
