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
for tool in curl nginx python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done
if [ -n "${BURNLINK_BIN:-}" ]; then
  bin="$BURNLINK_BIN"
else
  cargo build --quiet --release --manifest-path "$top/Cargo.toml"
  bin="${CARGO_TARGET_DIR:-$top/target}/release/burnlink"
fi
work="$(mktemp -d)"
# nginx started as root serves through workers running as `nobody`: they must read the file.
chmod 755 "$work"
bl_pid="" ; ng_pid=""
cleanup() {
  [ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true
  [ -n "$ng_pid" ] && kill "$ng_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data" "$work/nginx/logs"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/data/big.bin"
cat "$work/data/big.bin" > /dev/null   # page cache: measure the servers, not the disk

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bl_port=$(port); ng_port=$(port)
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$ng_port; root $work/data; }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
ng_pid=$!
export BURNLINK_KEYS="$("$bin" keygen)" BURNLINK_ROOT="$work/data" BURNLINK_BIND="127.0.0.1:$bl_port" \
       BURNLINK_API_TOKENS=bench BURNLINK_MAX_DOWNLOAD_BYTES=$((size_mib * 1024 * 1024 + 1)) \
       BURNLINK_LOG=warn
(cd "$work" && exec "$bin" serve >/dev/null 2>"$work/server.log") &
bl_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$bl_port/healthz" >/dev/null && \
  curl -s -o /dev/null "http://127.0.0.1:$ng_port/" && break
  sleep 0.1
done
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
