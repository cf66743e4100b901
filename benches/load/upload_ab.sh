#!/usr/bin/env bash
# Two builds side by side on uploads: 256 MiB `curl -T` uploads alternating between a server
# running BIN_A and one running BIN_B (same file, same disk, same minute), so that a busy
# machine or disk weighs on both alike. Prints "A|B HTTP_CODE BYTES_PER_S" per upload.
#
#   benches/load/upload_ab.sh BIN_A BIN_B [RUNS=5] [MIB=256]
#
# Needs: curl, python3. Bounded: 2 x RUNS uploads, each at most 120 s; servers stopped by PID.
set -euo pipefail
a="$1"; b="$2"; runs="${3:-5}"; mib="${4:-256}"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/a" "$work/b"
head -c "$((mib * 1024 * 1024))" /dev/urandom > "$work/up.bin"
cat "$work/up.bin" > /dev/null
export BURNLINK_KEYS="$("$a" keygen)" BURNLINK_API_TOKENS=bench BURNLINK_LOG=warn \
       BURNLINK_MAX_UPLOAD_BYTES=$((2 * mib * 1024 * 1024))
start() { # BIN DIR: starts a server, writes its port to DIR/port
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$2" && BURNLINK_ROOT="$2" BURNLINK_BIND="127.0.0.1:$port" exec "$1" serve >/dev/null 2>&1) &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "$port" > "$2/port"
}
start "$a" "$work/a"
start "$b" "$work/b"
for i in $(seq 1 "$runs"); do
  for which in A B; do
    if [ "$which" = A ]; then bin="$a"; dir="$work/a"; else bin="$b"; dir="$work/b"; fi
    port=$(cat "$dir/port")
    url=$(BURNLINK_ROOT="$dir" BURNLINK_BASE_URL="http://127.0.0.1:$port" "$bin" mint --upload "up$i.bin")
    curl -s --max-time 120 -o /dev/null -T "$work/up.bin" -w "$which %{http_code} %{speed_upload}\n" "$url"
    rm -f "$dir/up$i.bin"
  done
done
