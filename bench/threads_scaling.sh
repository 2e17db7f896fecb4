#!/usr/bin/env bash
# Every ...ThreadsPaired row of the benchmarks in bench/ (one piece of work timed at 2 threads and
# at 1 in alternating pairs in one process, bench/threads_paired.h) in one table: the medians of the
# 1-thread and 2-thread times, the speedup 1 / (median of the per-pair 2-thread/1-thread wall
# ratios) with its spread over the pairs, the CPU-time ratio and the number of pairs. A row whose
# speedup stays below 1 over three pairs in four is marked SLOWER. About 4 minutes on a quiet
# 2-core machine; longer under load.
#
#   bench/threads_scaling.sh BUILD_DIR [FILTER]
#
# FILTER (default ThreadsPaired) is the --benchmark_filter regex given to every binary; a narrower
# one must still match only ThreadsPaired rows ('ChainThreadsPaired|RowOpThreadsPaired').
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: bench/threads_scaling.sh BUILD_DIR [FILTER]" >&2
  exit 2
fi
BUILD=$1
FILTER=${2:-ThreadsPaired}
BENCHES=(core_bench optim_bench lora_bench attention_bench mlp_bench gpt2_lora_bench gpt2_bench)
missing=()
for b in "${BENCHES[@]}"; do [ -x "$BUILD/bench/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "threads_scaling: not built in $BUILD/bench: ${missing[*]} (cmake --build --preset default --target ${missing[*]})" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "threads_scaling: needs python3 for the table" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

start=$SECONDS
for b in "${BENCHES[@]}"; do
  echo "threads_scaling: $b ($((SECONDS - start)) s so far)" >&2
  if ! "$BUILD/bench/$b" --benchmark_filter="$FILTER" --benchmark_out="$TMP/$b.json" \
    --benchmark_out_format=json >"$TMP/$b.log" 2>&1; then
    echo "threads_scaling: $b failed:" >&2
    tail -n 5 "$TMP/$b.log" >&2
    exit 1
  fi
done
echo "threads_scaling: $((SECONDS - start)) s in all; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$TMP" "${BENCHES[@]}" <<'PY'
import json, os, sys

tmp, benches = sys.argv[1], sys.argv[2:]

def fmt(us):
    if us >= 1e6:
        return f"{us / 1e6:.3g} s"
    if us >= 1e3:
        return f"{us / 1e3:.3g} ms"
    return f"{us:.3g} us"

rows = []
for b in benches:
    path = os.path.join(tmp, b + ".json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:  # no row of this binary matched
        continue
    with open(path) as f:
        for r in json.load(f)["benchmarks"]:
            name = f"{b} " + r["name"].replace("/iterations:1", "").replace("/manual_time", "")
            name += f" ({r['label']})" if r.get("label") else ""
            if r.get("error_occurred"):
                rows.append((name, "-", "-", "-", "-", "-", "-", "skipped: " + r.get("error_message", "")))
            elif "t2/t1" in r:
                ratio, q1, q3 = r["t2/t1"], r["t2/t1_q1"], r["t2/t1_q3"]
                rows.append((name, fmt(r["t1_us"]), fmt(r["t2_us"]), f"{1 / ratio:.2f}", f"{1 / q3:.2f}-{1 / q1:.2f}",
                             f"{r['cpu_time_ratio']:.2f}", str(int(r["pairs"])), "SLOWER" if q1 > 1 else ""))
if not rows:
    sys.exit("threads_scaling: no ThreadsPaired row matched")
head = ("benchmark", "1 thread", "2 threads", "speedup", "IQR", "cpu 2t/1t", "pairs", "")
widths = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
for row in [head] + rows:
    print("  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
slower = sum(1 for x in rows if x[-1] == "SLOWER")
print(f"{len(rows)} rows; {slower} SLOWER (2 threads slower than 1 in at least three pairs of four)")
PY
