#!/usr/bin/env bash
# burnlink side by side with nginx's secure_link (expiring signed links, not single-use) on the
# same files, on loopback, in one run. Prints one table: burnlink, nginx, ratio per row.
#
#   benches/load/run.sh [DURATION_S=5]
#
# BURNLINK_BIN=path/to/burnlink measures that binary instead of building one (to compare builds
# side by side); BURNLINK_WORKERS is passed on to the server (0: one shared runtime).
#
# Needs: cargo, curl, wrk, nginx (with the secure_link module, as Debian's is), python3.
# MCP calls are raw JSON-RPC tools/call requests sent by wrk (the server runs MCP stateless),
# each answer checked for "isError":false.
# Bounded: each wrk run lasts DURATION_S, each curl at most 120 s; servers stop on exit.
set -euo pipefail
dur="${1:-5}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
here="$top/benches/load"
# shellcheck source=common.sh
. "$top/benches/load/common.sh"
need curl wrk nginx python3
bin="$(burnlink_bin "$top")"

scratch_beside_nginx
data="$work/data"
mkdir -p "$data" "$work/dav/dav"
# nginx's workers (nobody) write WebDAV uploads here.
chmod 777 "$work/dav/dav"

echo "== preparing files in $work"
head -c 4096 /dev/urandom > "$data/small.bin"
head -c $((1024 * 1024 * 1024)) /dev/urandom > "$data/big.bin"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$work/upload.bin"
# 2,000 files, about 200 MiB: half compressible text, half random bytes named as photos.
python3 - "$data/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
words = [b"alpha", b"beta", b"gamma", b"delta", b"log", b"line", b"error", b"ok", b"0123456789"]
for i in range(2000):
    d = os.path.join(root, f"d{i % 40:02d}")
    os.makedirs(d, exist_ok=True)
    size = rnd.randint(20_000, 190_000)
    if i % 2:
        body = os.urandom(size)
        name = f"photo{i}.jpg"
    else:
        out = bytearray()
        while len(out) < size:
            out += b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
        body = bytes(out[:size])
        name = f"notes{i}.txt"
    with open(os.path.join(d, name), "wb") as f:
        f.write(body)
PY
cat "$data/big.bin" "$work/upload.bin" > /dev/null   # page cache: measure servers, not the disk
find "$data/tree" -type f -exec cat {} + > /dev/null
tree_bytes=$(du -sb --apparent-size "$data/tree" | cut -f1)

bl_port=$(free_port); ng_port=$(free_port)

echo "== starting burnlink (release) on $bl_port and nginx on $ng_port"
export BURNLINK_MAX_DOWNLOAD_BYTES=$((2 * 1024 * 1024 * 1024)) BURNLINK_MAX_UPLOAD_BYTES=$((512 * 1024 * 1024))
start_burnlink "$bl_port" "$data"
secret="bench-secret-$RANDOM$RANDOM"
start_nginx "$ng_port" "$data" "$(cat <<NGINX
    # The upload row's counterpart: a WebDAV PUT, written to a temporary and renamed into place
    # (nginx neither fsyncs nor hashes it).
    location /dav/ {
      root $work/dav;
      dav_methods PUT;
      client_max_body_size 1g;
    }
$(secure_link_location "$secret")
NGINX
)"

# The burnlink server's peak memory for one row: clear the high-water mark, run, read it.
reset_peak() { echo 5 > "/proc/$bl_pid/clear_refs" 2>/dev/null || true; }
peak_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$bl_pid/status"; }
nginx_peak_mib() {
  local max=0 kb
  for p in $(pgrep -P "$ng_pid") "$ng_pid"; do
    kb=$(awk '/VmHWM/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$max" ] && max=$kb
  done
  awk -v k="$max" 'BEGIN { printf "%.1f", k / 1024 }'
}

declare -a rows
row() { rows+=("$1|$2|$3|$4"); }   # name | burnlink | nginx | burnlink peak MiB

# Enough for both rows at the rates measured so far (up to about 52,000 req/s at c=1 and
# 157,000 at c=32) with room to spare: a run that runs out is refused and says so below.
links=$((300000 * dur))
echo "== minting $links one-time links with the CLI (and twice as many nginx links)"
"$bin" mint small.bin --count "$links" --ttl 1h | sed "s#^http://127.0.0.1:$bl_port##" > "$work/bl_urls"
# nginx may serve more requests per second: give it links enough that it never runs out (a
# link it re-sends is served again, not refused).
nginx_urls /small.bin "$((links * 2))" "$secret" > "$work/ng_urls"

for c in 1 32; do
  t=$(( c == 1 ? 1 : 2 ))
  echo "== 4 KiB one-time downloads, concurrency $c, ${dur}s"
  # Writeback of the files written before the row (about 1.5 GiB of data and the link lists
  # first, the trimmed link lists after) would otherwise share the cores with the first
  # server measured, which is always burnlink.
  sync
  reset_peak
  b=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$bl_port" -- "$work/bl_urls" "$t" | grep RESULT)
  bpeak=$(peak_mib)
  n=$(wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$here/walk.lua" "http://127.0.0.1:$ng_port" -- "$work/ng_urls" "$t" | grep RESULT)
  echo "   burnlink: $b"; echo "   nginx:    $n"
  # Remove the links this run used, so the next run starts on fresh ones. wrk does not count
  # a request still in flight when its time is up, though the server may have served (and
  # burned) it: skip one more link per connection.
  used=$(echo "$b" | field requests); tail -n +"$((used + c + 1))" "$work/bl_urls" > "$work/bl_next"; mv "$work/bl_next" "$work/bl_urls"
  used=$(echo "$n" | field requests); tail -n +"$((used + 1))" "$work/ng_urls" > "$work/ng_next"; mv "$work/ng_next" "$work/ng_urls"
  row "4 KiB downloads c=$c (req/s)" "$(echo "$b" | field rps)" "$(echo "$n" | field rps)" "$bpeak"
  row "4 KiB downloads c=$c p99 (ms, lower is better)" "$(echo "$b" | field p99_ms)" "$(echo "$n" | field p99_ms)" "$bpeak"
  [ "$(echo "$b" | field refused)" = 0 ] || echo "   WARNING: burnlink refused requests (status 400 or more): $b"
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "== 1 GiB download with curl, 3 runs each (median)"
reset_peak
b=$(for _ in 1 2 3; do curl -s --max-time 120 -o /dev/null -w '%{speed_download}\n' "$("$bin" mint big.bin)"; done | median)
bpeak=$(peak_mib)
n=$(for _ in 1 2 3; do curl -s --max-time 120 -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$ng_port$(nginx_urls /big.bin 1 "$secret")"; done | median)
row "1 GiB download (MB/s)" "$(awk -v v="$b" 'BEGIN { printf "%.0f", v / 1e6 }')" "$(awk -v v="$n" 'BEGIN { printf "%.0f", v / 1e6 }')" "$bpeak"

echo "== directory of 2,000 files ($((tree_bytes / 1024 / 1024)) MiB) as zip"
reset_peak
if url=$("$bin" mint tree 2>/dev/null); then
  r=$(curl -s --max-time 120 -o /dev/null -w '%{size_download} %{time_total}' "$url")
  mbs=$(echo "$r" | awk -v t="$tree_bytes" '{ printf "%.0f", t / $2 / 1e6 }')
  row "2,000-file directory as zip (MB/s of file data)" "$mbs" "-" "$(peak_mib)"
else
  row "2,000-file directory as zip (MB/s of file data)" "n/a (directory links not built)" "-" "-"
fi

echo "== 256 MiB upload with curl -T, 3 pairs (the pair with the median ratio; nginx: WebDAV PUT)"
# In pairs, burnlink then nginx, and the row is the pair with the median ratio. On this
# machine (a VM) writing new data runs at about 1,100 MB/s and then, a gigabyte or so later,
# at about 300, for both servers, to disk or to tmpfs (docs/benchmarks.md, "The eighth
# performance pass"). Three uploads to one server and then three to the other compared the
# two states; a pair that straddles the change has an outlying ratio, which the median drops.
sync
reset_peak
bs=(); ns=()
for i in 1 2 3; do
  url=$("$bin" mint --upload "incoming/upload$i.bin")
  r=$(curl -s --max-time 120 -o /dev/null -T "$work/upload.bin" -w '%{http_code} %{speed_upload}' "$url")
  [ "${r%% *}" = 201 ] || echo "   WARNING: burnlink upload answered ${r%% *}" >&2
  bs+=("${r#* }")
  r=$(curl -s --max-time 120 -o /dev/null -T "$work/upload.bin" -w '%{http_code} %{speed_upload}' "http://127.0.0.1:$ng_port/dav/upload$i.bin")
  [ "${r%% *}" = 201 ] || echo "   WARNING: nginx PUT answered ${r%% *}" >&2
  ns+=("${r#* }")
  echo "   burnlink $(awk -v v="${bs[-1]}" 'BEGIN { printf "%.0f", v / 1e6 }') MB/s, nginx $(awk -v v="${ns[-1]}" 'BEGIN { printf "%.0f", v / 1e6 }') MB/s"
done
bpeak=$(peak_mib)
read -r b n < <(for i in 0 1 2; do echo "${bs[$i]} ${ns[$i]}"; done \
  | awk '{ print ($2 > 0 ? $1 / $2 : 0), $1, $2 }' | sort -g | sed -n 2p | cut -d' ' -f2-)
row "256 MiB upload (MB/s)" "$(awk -v v="$b" 'BEGIN { printf "%.0f", v / 1e6 }')" "$(awk -v v="$n" 'BEGIN { printf "%.0f", v / 1e6 }')" "$bpeak"

echo "== minting through POST /api/links, concurrency 32, ${dur}s"
reset_peak
m=$(wrk -t2 -c32 -d"${dur}s" --latency -s "$here/mint.lua" "http://127.0.0.1:$bl_port/api/links" -- bench small.bin | grep RESULT)
echo "   $m"
row "links minted via POST /api/links (links/s)" "$(echo "$m" | field rps)" "-" "$(peak_mib)"

echo "== minting through MCP tools/call create_download_link, concurrency 32, ${dur}s"
reset_peak
m=$(wrk -t2 -c32 -d"${dur}s" --latency -s "$here/mcp_call.lua" "http://127.0.0.1:$bl_port/mcp" -- bench small.bin | grep RESULT)
echo "   $m"
[ "$(echo "$m" | field failed)" = 0 ] || echo "   WARNING: MCP calls failed: $m"
row "links minted via MCP create_download_link (links/s)" "$(echo "$m" | field rps)" "-" "$(peak_mib)"
nginx_peak=$(nginx_peak_mib)

echo
echo "burnlink $(git -C "$top" rev-parse --short HEAD) vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
printf '| %-52s | %12s | %10s | %8s | %s |\n' "row" "burnlink" "nginx" "ratio" "burnlink peak MiB"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "--------------" "------------" "----------" "-------------------"
for r in "${rows[@]}"; do
  IFS='|' read -r name bv nv pk <<<"$r"
  ratio=$(awk -v b="$bv" -v n="$nv" -v name="$name" 'BEGIN {
    if (n + 0 == 0 || b + 0 == 0) { print "-"; exit }
    if (name ~ /lower is better/) printf "%.2f", n / b; else printf "%.2f", b / n }')
  printf '| %-52s | %12s | %10s | %8s | %s |\n' "$name" "$bv" "$nv" "$ratio" "$pk"
done
echo "(ratio: burnlink relative to nginx, higher is better for burnlink; nginx peak RSS of its largest process: ${nginx_peak} MiB)"
