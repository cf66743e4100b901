"""Per-request cost from two callgrind profiles of the same server (see callgrind.sh): the
difference in instructions and in calls to the allocator, divided by the difference in
requests, and the callers of the allocator that account for most of those calls."""
import collections
import re
import sys

# The allocator's entry points: libc's, which every allocation passes through, and Rust's shims
# in front of them. A build with LTO (the release profile) inlines most shims into their
# callers; there libc's callers say where allocations come from, elsewhere the shims' callers.
ALLOC = ("__rustc::__rust_alloc", "__rustc::__rust_alloc_zeroed", "__rustc::__rust_realloc")
LIBC = ("malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign", "memalign")


def read(path):
    """Total instructions, and the allocations by caller: the shims' callers when most
    allocations pass through the shims, else libc's callers."""
    names, total = {}, 0
    rust, libc = collections.Counter(), collections.Counter()
    fn = cfn = None
    for line in open(path, errors="replace"):
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, i, name = m.groups()
            if name:
                names[i] = name.strip()
            if kind == "fn":
                fn = names.get(i)
            else:
                cfn = names.get(i)
            continue
        if line.startswith("calls=") and cfn is not None:
            calls = int(line.split("=")[1].split()[0])
            if cfn in ALLOC:
                rust[fn] += calls
            elif cfn.split("'")[0] in LIBC:
                libc[fn] += calls
    if sum(rust.values()) * 2 >= sum(libc.values()):
        return total, rust
    return total, libc


small, large, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
(ir0, c0), (ir1, c1) = read(small), read(large)
allocs = (sum(c1.values()) - sum(c0.values())) / n
print(f"per 4 KiB download: {(ir1 - ir0) / n:,.0f} instructions, {allocs:.1f} heap allocations")
print("allocations per download by caller:")
diff = collections.Counter({k: v - c0.get(k, 0) for k, v in c1.items()})
for name, count in diff.most_common(15):
    if count <= 0:
        break
    print(f"  {count / n:6.2f}  {name[:140]}")
