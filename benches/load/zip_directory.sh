#!/usr/bin/env bash
# Directory links: archive throughput through a release build, on loopback, for trees of 2,000
# files of about 200 MiB: all already compressed (Stored), all text (Deflate), and half of each.
# Prints, per run, the archive bytes curl received, the time, the archive rate and the rate over
# the tree's own bytes; then the server's peak resident memory (VmHWM).
#
#   benches/load/zip_directory.sh [RUNS=3]
#
# Bounded: RUNS downloads per tree, each with a 300 s cap; the server is stopped at the end.
set -euo pipefail
runs="${1:-3}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
bin="$(burnlink_bin "$top")"

work="$(mktemp -d)"
bl_pid=""
trap '[ -n "$bl_pid" ] && kill "$bl_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/data"

# 2,000 files of ~100 KiB each per tree: random bytes named .jpg (stored), and English-like
# text from a 2,000-word vocabulary (deflated; about 1.8:1 at level 1).
python3 - "$work/data" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
letters = "etaoinshrdlucmfwypvbgkjqxz"
vocab = ["".join(rng.choice(letters[: rng.randint(6, 26)]) for _ in range(rng.randint(2, 10)))
         for _ in range(2000)]
def text(n):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(vocab) for _ in range(12)) + ".\n"
        out.append(line); size += len(line)
    return "".join(out).encode()[:n]
def tree(name, kinds):
    for i in range(2000):
        d = os.path.join(root, name, f"d{i % 20:02}")
        os.makedirs(d, exist_ok=True)
        kind = kinds[i % len(kinds)]
        size = rng.randint(80 * 1024, 130 * 1024)
        if kind == "jpg":
            data = os.urandom(size)
        else:
            data = text(size)
        with open(os.path.join(d, f"f{i:04}.{kind}"), "wb") as f:
            f.write(data)
tree("stored", ["jpg"])
tree("deflate", ["txt"])
tree("mixed", ["jpg", "txt"])
EOF
cat "$work"/data/*/*/* > /dev/null   # into the page cache: measure the server, not the disk

port=$(free_port)
export BURNLINK_MAX_DOWNLOAD_BYTES=$((1024 * 1024 * 1024)) BURNLINK_BASE_URL="http://127.0.0.1:$port"
start_burnlink "$port" "$work/data"

for tree in stored deflate mixed; do
  tree_bytes=$(du -sb --apparent-size "$work/data/$tree" | cut -f1)
  for i in $(seq 1 "$runs"); do
    url="$("$bin" mint "$tree")"
    curl -s --max-time 300 -o /dev/null -w "%{size_download} %{time_total}\n" "$url" |
      awk -v t="$tree" -v i="$i" -v tb="$tree_bytes" \
        '{ printf "%-7s run %d: archive %d bytes in %.3fs = %.1f MB/s archive, %.1f MB/s of tree (%d bytes)\n",
                  t, i, $1, $2, $1 / $2 / 1e6, tb / $2 / 1e6, tb }'
  done
done
grep VmHWM "/proc/$bl_pid/status"
