#!/usr/bin/env bash
# One-time uploads of one large file with curl (-T, streamed from disk) through a release
# build, on loopback. Prints curl's speed per run and the server's peak resident memory (VmHWM).
#
#   benches/load/upload.sh [RUNS=5] [SIZE_MIB=256]
#
# Bounded: RUNS uploads, each with a 120 s cap; the server is stopped at the end. Each upload
# is hashed, written, fsynced and renamed, so the figure includes the disk's sync time.
set -euo pipefail
runs="${1:-5}"
size_mib="${2:-256}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"

work="$(mktemp -d)"
bl_pid=""
trap '[ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/src.bin"
cat "$work/src.bin" > /dev/null   # into the page cache: measure the server, not the source disk

port=$(free_port)
export BURNLINK_MAX_UPLOAD_BYTES=$((size_mib * 1024 * 1024 + 1))
start_burnlink "$port" "$work/data"

for i in $(seq 1 "$runs"); do
  url="$("$bin" mint --upload "up-$i.bin")"
  curl -s --max-time 120 -o /dev/null -T "$work/src.bin" \
       -w "run $i: HTTP %{http_code}, %{size_upload} bytes in %{time_total}s = %{speed_upload} B/s\n" "$url"
  rm -f "$work/data/up-$i.bin"
done
grep VmHWM "/proc/$bl_pid/status"
