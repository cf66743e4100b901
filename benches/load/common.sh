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
