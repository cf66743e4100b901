# Sourced by the load scripts: what each of them needs before it starts a server.
# shellcheck shell=bash

# Fails, naming the package, unless every tool given is on PATH.
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
  done
}

# Prints the burnlink binary to measure: $BURNLINK_BIN when set (to compare builds), else the
# release build of this checkout, built now. $1 is the checkout's top directory.
burnlink_bin() {
  if [ -n "${BURNLINK_BIN:-}" ]; then
    echo "$BURNLINK_BIN"
  else
    cargo build --quiet --release --manifest-path "$1/Cargo.toml" >&2 || return 1
    echo "${CARGO_TARGET_DIR:-$1/target}/release/burnlink"
  fi
}

# A free loopback port (the kernel's pick; the server binds it a moment later).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts the burnlink server being measured ($bin) on 127.0.0.1:PORT, serving ROOT, with the
# settings the load scripts share (a fresh key, API token `bench`, warnings only, no
# confirmation page) and any other BURNLINK_* the caller exported, and waits until it answers
# /healthz (10 s at most). Sets $bl_pid; its output goes to $work/burnlink.out and .log.
start_burnlink() { # PORT ROOT
  BURNLINK_KEYS="$("$bin" keygen)"
  export BURNLINK_KEYS BURNLINK_ROOT="$2" BURNLINK_BIND="127.0.0.1:$1" BURNLINK_API_TOKENS=bench \
         BURNLINK_LOG=warn BURNLINK_BROWSER_CONFIRM=false
  (cd "$work" && exec "$bin" serve >"$work/burnlink.out" 2>"$work/burnlink.log") &
  bl_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "burnlink did not answer on port $1:" >&2
  cat "$work/burnlink.log" >&2
  return 1
}

# Sets $work to a new scratch directory that nginx's workers (which run as `nobody` when nginx
# is started as root) can read, and arranges that on exit the servers whose PIDs the script
# keeps in $bl_pid (burnlink) and $ng_pid (nginx) are stopped and $work is removed.
scratch_beside_nginx() {
  work="$(mktemp -d)"
  chmod 755 "$work"
  bl_pid="" ; ng_pid=""
  trap stop_servers EXIT
}

stop_servers() {
  [ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true
  [ -n "$ng_pid" ] && kill "$ng_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}

# The first number after NAME= on standard input (wrk's RESULT lines: rps=…, p99_ms=…).
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | head -1; }

# Starts nginx beside burnlink, waits until it answers (10 s at most), and sets $ng_pid: $1
# its port, $2 the directory it serves, $3 more nginx directives for its server block
# (locations), if any. Its tuning is the one every
# load script compares with: sendfile, TCP_CORK for headers, no access log, keep-alive without
# a request limit. Its files live under $work/nginx.
start_nginx() {
  mkdir -p "$work/nginx/logs"
  cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$1;
    root $2;
${3:-}
  }
}
NGINX
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  ng_pid=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nginx did not answer on port $1" >&2
  return 1
}

# The nginx location that serves files only through secure_link URLs signed with $1: expiring
# signed links, the nearest thing nginx has to burnlink's (which are also single-use).
secure_link_location() {
  cat <<NGINX
    location / {
      secure_link \$arg_md5,\$arg_expires;
      secure_link_md5 "\$secure_link_expires\$uri $1";
      if (\$secure_link = "") { return 403; }
      if (\$secure_link = "0") { return 410; }
    }
NGINX
}

# COUNT secure_link URLs for PATH signed with SECRET, one per line, each distinct (as each
# burnlink link is): md5 over "expires + uri + secret", URL-safe base64 without padding.
nginx_urls() { # PATH COUNT SECRET
  python3 - "$1" "$2" "$3" <<'PY'
import base64, hashlib, sys, time
path, count, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
exp = int(time.time()) + 3600
for i in range(count):
    e = exp + i
    md5 = base64.urlsafe_b64encode(hashlib.md5(f"{e}{path} {secret}".encode()).digest()).rstrip(b"=")
    print(f"{path}?md5={md5.decode()}&expires={e}")
PY
}

# The connections each event loop of the burnlink at PID, listening on PORT, serves
# (`loop_connections PID PORT`, prints e.g. "16 / 16"): the TCP sockets registered with its
# epoll instance, the listening socket left out (and the Unix socket of tokio's signal
# handling, which every instance holds). A loop's instance is found by the listening socket
# it holds (one shared by all, or one each); each appears twice among the descriptors (tokio
# keeps a duplicate), so identical lists are counted once. A connection that moves between
# loops while the two copies are read (burnlink_connections_moved_total) can make one loop's
# copies differ: three numbers then, one loop read twice.
loop_connections() {
  # Two processes in all (find and awk): this runs midway through a measured run, sharing the
  # cores with the server and wrk. The earlier form forked a readlink per descriptor: 70-90 ms
  # of CPU on an idle server, 250 ms during a run at c=32, which made the p99 of the runs it fell
  # in about twice as long (docs/benchmarks.md, "The fourteenth performance pass").
  find "/proc/$1/fd" -mindepth 1 -printf '%f %l\n' 2>/dev/null | awk -v pid="$1" -v p="$(printf ':%04X' "$2")" '
    BEGIN {
      while ((getline line < "/proc/net/tcp") > 0) {
        split(line, f, " ")
        if (f[1] == "sl") continue
        sock = "socket:[" f[10] "]"
        if (f[2] ~ p "$" && f[4] == "0A") is_listener[sock] = 1; else is_tcp[sock] = 1
      }
    }
    { target[$1] = $2; if ($2 == "anon_inode:[eventpoll]") epolls[++n] = $1 }
    END {
      for (e = 1; e <= n; e++) {
        list = ""; count = 0; mine = 0
        info = "/proc/" pid "/fdinfo/" epolls[e]
        while ((getline line < info) > 0) {
          split(line, f, " ")
          if (f[1] != "tfd:") continue
          t = target[f[2]]; list = list " " t
          if (t in is_listener) mine = 1; else if (t in is_tcp) count++
        }
        close(info)
        if (mine && !(list in seen)) { seen[list] = 1; s = s sep count; sep = " / " }
      }
      print s
    }'
}

# Runs `loop_connections PID PORT > FILE` in the background, halfway through the wrk run of
# DURATION_S over the links in URLS that the caller starts next; with several PIDs (nginx's
# workers) one count per process, joined by " / ". Halfway counts from the
# moment walk.lua's threads start sending: when its gate file (URLS.go) appears, once every
# wrk thread has read the file, which took over 2 s on one machine. Waits for the gate 60 s
# at most. `$!` is its PID, to `wait` for. A script that compares two servers counts both, so
# that the count's own CPU falls on both runs alike.
split_midway() { # "PID..." PORT DURATION_S FILE URLS
  rm -f "$5.go"
  ( for _ in $(seq 1 6000); do [ -e "$5.go" ] && break; sleep 0.01; done
    sleep "$(awk -v d="$3" 'BEGIN { print d / 2 }')"
    out=""
    for p in $1; do out="$out${out:+ / }$(loop_connections "$p" "$2")"; done
    echo "$out" > "$4" ) &
}
