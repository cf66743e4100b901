#!/usr/bin/env bash
# Heap allocations per 4 KiB one-time download in the real server at full speed, counted by
# uprobes on libc's malloc, calloc and realloc (perf probe). callgrind.sh counts them too, but
# under valgrind 3.19, which does not know openat2: there every download takes the blocking
# pool's fallback path instead of the lane's in-line open, so its count is the fallback's.
#
#   benches/load/malloc_count.sh [N=20000] [OUT.data]
#   perf report -i OUT.data --no-children -g caller --sort sym   # who allocates
#
# Serves N downloads (each a fresh link, one keep-alive connection, Python's http.client) after
# a warm-up of N/10, and prints the calls per download. Needs root (uprobes), perf, curl,
# python3. BURNLINK_BIN=path/to/burnlink measures that binary instead of building one.
# Bounded: 1.1 N requests; the server is stopped by PID; the probes are removed on exit.
set -euo pipefail
n="${1:-20000}"; rec="${2:-}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
need perf curl python3
bin="$(burnlink_bin "$top")"
libc=$(ldd "$bin" | awk '/libc.so.6/ { print $3 }')
work="$(mktemp -d)"
bl_pid=""
cleanup() {
  [ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true
  perf probe -q -d 'probe_burnlink_count:*' 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for f in malloc calloc realloc; do
  perf probe -q -x "$libc" -a "probe_burnlink_count:$f=$f"
done
mkdir -p "$work/data"
head -c 4096 /dev/urandom > "$work/data/small.bin"
port=$(free_port)
start_burnlink "$port" "$work/data"
"$bin" mint small.bin --count "$((n / 10))" --ttl 1h | sed "s#^http://127.0.0.1:$port##" > "$work/warm"
"$bin" mint small.bin --count "$n" --ttl 1h | sed "s#^http://127.0.0.1:$port##" > "$work/urls"
python3 "$here/sequential_get.py" "$port" "$work/warm"
if [ -n "$rec" ]; then
  # With OUT.data: the allocations' call stacks as well (DWARF unwinding: Rust's frames have
  # no frame pointers), so perf report can say who allocates.
  perf record -q -e 'probe_burnlink_count:*' --call-graph dwarf,16384 -p "$bl_pid" -o "$rec" -- \
    python3 "$here/sequential_get.py" "$port" "$work/urls"
  perf report -i "$rec" --stats 2>/dev/null | grep -i "sample" | head -3 || true
  exit 0
fi
perf stat -x, -e 'probe_burnlink_count:*' -p "$bl_pid" -o "$work/stat" -- \
  python3 "$here/sequential_get.py" "$port" "$work/urls"
awk -F, -v n="$n" '/probe_burnlink_count/ { sub(".*:", "", $3); printf "%-8s %.2f per download\n", $3, $1 / n; t += $1 }
  END { printf "total    %.2f heap allocations per download (%d downloads)\n", t / n, n }' "$work/stat"
