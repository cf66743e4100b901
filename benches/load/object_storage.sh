#!/usr/bin/env bash
# The filesystem and an S3-compatible bucket side by side, in one run, through a release build
# on loopback: a SIZE_MIB download and upload with curl, and a directory of 8 files of
# SIZE_MIB/8 as a zip, each timed; the server's peak resident memory (VmHWM) per backend.
# The bucket is moto (PyPI `moto[server]`, in /var/tmp/burnlink-venv as scripts/test installs
# it), a Python server: its own speed bounds the bucket's figures, so read them as what
# burnlink adds on top of a bucket, not as what S3 itself would give.
#
#   benches/load/object_storage.sh [SIZE_MIB=1024]
#
# Bounded: one transfer of each kind per backend, each with a 300 s cap; every process it
# started is stopped by its PID at the end.
set -euo pipefail
size_mib="${1:-1024}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
cargo build --quiet --release --manifest-path "$top/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$top/target}/release/burnlink"
venv="${BURNLINK_VENV:-/var/tmp/burnlink-venv}"
py="$venv/bin/python"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bytes=$((size_mib * 1024 * 1024))
head -c "$bytes" /dev/urandom > "$work/src.bin"
mkdir -p "$work/tree"
for i in 1 2 3 4 5 6 7 8; do head -c $((bytes / 8)) /dev/urandom > "$work/tree/part-$i.bin"; done

moto_port=$((20000 + RANDOM % 20000))
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null && break; sleep 0.1; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=bench \
       AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
"$py" - "$work" <<'EOF'
import os, sys, boto3
work = sys.argv[1]
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
s3.upload_file(f"{work}/src.bin", "bench", "data/big.bin")
for name in sorted(os.listdir(f"{work}/tree")):
    s3.upload_file(f"{work}/tree/{name}", "bench", f"data/tree/{name}")
EOF

run_backend() {
  local name="$1" root="$2"
  local port=$((20000 + RANDOM % 20000))
  export BURNLINK_KEYS="$("$bin" keygen)" BURNLINK_ROOT="$root" BURNLINK_BIND="127.0.0.1:$port" \
         BURNLINK_API_TOKENS=bench BURNLINK_MAX_DOWNLOAD_BYTES=$((bytes * 2)) \
         BURNLINK_MAX_UPLOAD_BYTES=$((bytes * 2)) BURNLINK_LOG=warn
  (cd "$work" && exec "$bin" serve >/dev/null 2>"$work/$name.log") &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  url="$("$bin" mint big.bin)"
  curl -s --max-time 300 -o /dev/null \
       -w "$name download: HTTP %{http_code}, %{size_download} bytes in %{time_total}s = %{speed_download} B/s\n" "$url"
  url="$("$bin" mint --upload up.bin)"
  curl -s --max-time 300 -o /dev/null -T "$work/src.bin" \
       -w "$name upload: HTTP %{http_code}, %{size_upload} bytes in %{time_total}s = %{speed_upload} B/s\n" "$url"
  url="$("$bin" mint tree)"
  curl -s --max-time 300 -o /dev/null \
       -w "$name zip of 8 files: HTTP %{http_code}, %{size_download} bytes in %{time_total}s = %{speed_download} B/s\n" "$url"
  echo "$name peak RSS: $(grep VmHWM "/proc/$pid/status")"
  kill "$pid"
}

mkdir -p "$work/data"
cp "$work/src.bin" "$work/data/big.bin"
cp -r "$work/tree" "$work/data/tree"
cat "$work/data/big.bin" "$work/data/tree/"* > /dev/null   # page cache: measure the server
run_backend filesystem "$work/data"
run_backend bucket "s3://bench/data"
