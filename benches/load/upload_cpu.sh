#!/usr/bin/env bash
# Where an upload's CPU goes, burnlink beside nginx's WebDAV PUT: 256 MiB `curl -T` uploads
# alternating between the two servers, and for each one the rate, the CPU time the server and
# curl spent, and how busy the machine's cores were while it ran. An upload that keeps every
# core busy is bound by CPU, and then the CPU it spends is what sets its rate.
#
#   benches/load/upload_cpu.sh [PAIRS=4] [MIB=256]
#
# BURNLINK_BIN=path/to/burnlink measures that binary instead of building one.
# Prints one line per upload:
#   server MB/s server_cpu_ms (user+system, all threads) curl_cpu_ms cores_busy switches
# cores_busy is the machine's non-idle time during the upload over its wall time (2.00 is
# both cores of a 2-core machine busy throughout); switches counts the server's context switches
# (a thread that ended during the upload is not counted).
#
# Needs: cargo, curl, nginx, python3. Bounded: 2 x PAIRS uploads, each at most 120 s; servers
# stop on exit.
set -euo pipefail
pairs="${1:-4}"; mib="${2:-256}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
need curl nginx python3
bin="$(burnlink_bin "$top")"

scratch_beside_nginx
data="$work/data"
mkdir -p "$data/incoming" "$work/dav/dav"
chmod 777 "$work/dav/dav"
head -c "$((mib * 1024 * 1024))" /dev/urandom > "$work/upload.bin"
cat "$work/upload.bin" > /dev/null

bl_port=$(free_port); ng_port=$(free_port)
export BURNLINK_MAX_UPLOAD_BYTES=$((2 * mib * 1024 * 1024))
start_burnlink "$bl_port" "$data"
start_nginx "$ng_port" "$data" "$(cat <<NGINX
    location /dav/ {
      root $work/dav;
      dav_methods PUT;
      client_max_body_size 2g;
    }
NGINX
)"

hz=$(getconf CLK_TCK)
cores=$(nproc)
# CPU ticks (user + system) of the given processes, all their threads.
ticks() { for p in "$@"; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | awk '{ s += $1 } END { print s }'; }
# Context switches (voluntary and not) of the given processes' threads alive now.
switches() { for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
# The machine's busy and total ticks, all cores (/proc/stat's first line; idle and iowait
# are not busy).
machine() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
ng_workers=$(pgrep -P "$ng_pid" | tr '\n' ' ')

# Runs one upload to URL and prints its line; $1 names the server, $2.. its PIDs.
measure() { # NAME URL PIDS...
  local name="$1" url="$2"; shift 2
  local s0 m0 t0 x0 s1 m1 t1 x1 out code rate curl_ms
  sync
  s0=$(ticks "$@"); x0=$(switches "$@"); read -r m0 t0 < <(machine)
  # `times` after curl prints this subshell's children's user and system time, second line.
  out=$( { curl -s --max-time 120 -o /dev/null -T "$work/upload.bin" -w '%{http_code} %{speed_upload}\n' "$url"; times; } )
  s1=$(ticks "$@"); x1=$(switches "$@"); read -r m1 t1 < <(machine)
  read -r code rate < <(echo "$out" | head -1)
  [ "$code" = 201 ] || echo "   WARNING: $name answered $code" >&2
  curl_ms=$(echo "$out" | sed -n 3p | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } } END { printf "%.0f", s * 1000 }')
  awk -v n="$name" -v r="$rate" -v s=$((s1 - s0)) -v hz="$hz" -v c="$curl_ms" \
      -v mb=$((m1 - m0)) -v mt=$((t1 - t0)) -v k="$cores" -v x=$((x1 - x0)) \
      'BEGIN { printf "%-8s %6.0f MB/s  server %5.0f ms  curl %5.0f ms  cores busy %.2f  switches %d\n", n, r / 1e6, s * 1000 / hz, c, (mt > 0 ? k * mb / mt : 0), x }'
}

echo "== ${mib} MiB uploads, $pairs pairs, burnlink then nginx ($cores cores)"
for i in $(seq 1 "$pairs"); do
  url=$(BURNLINK_BASE_URL="http://127.0.0.1:$bl_port" "$bin" mint --upload "incoming/up$i.bin")
  measure burnlink "$url" "$bl_pid"
  # shellcheck disable=SC2086
  measure nginx "http://127.0.0.1:$ng_port/dav/up$i.bin" $ng_workers
  rm -f "$data/incoming/up$i.bin" "$work/dav/dav/up$i.bin"
done
