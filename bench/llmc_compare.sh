#!/bin/bash
# lowrank's CPU GPT-2 training step against llm.c's train_gpt2.c on the same config, run
# alternately (llm.c, lowrank, llm.c, ...) so both see the same machine load; writes both tokens/s.
#
#   bench/llmc_compare.sh LLMC_DIR GPT2_STEP OUTDIR L H C CTX B T THREADS [ROUNDS] [STEPS]
#
# LLMC_DIR: the anchor folder (../shared/anchors/llm.c: train_gpt2.c unchanged and its bench/
# harness). GPT2_STEP: the bench/gpt2_step binary (Release build). llm.c is built with its own
# Makefile flags (-Ofast -march=native -fopenmp), its threads set by OMP_NUM_THREADS. Both sides:
# random init, random ids, no dropout, AdamW with the same hyperparameters, the median step over
# STEPS-1 timed steps (the first is a warm-up). llm.c pads the vocabulary to 50304, lowrank keeps
# 50257 (0.1% fewer head FLOPs).
# Output: OUTDIR/rounds.jsonl (every round's JSON line from both) and OUTDIR/summary.json (median
# tokens/s over the rounds per program, and lowrank/llm.c), also printed.
set -euo pipefail
if [ $# -lt 10 ]; then
  sed -n 2,16p "$0" >&2
  exit 2
fi
llmc=$(cd "$1" && pwd) step=$2 out=$3 L=$4 H=$5 C=$6 ctx=$7 B=$8 T=$9 threads=${10}
rounds=${11:-3} steps=${12:-4}
for f in "$llmc/bench/time_gpt2.c" "$llmc/bench/make_inputs.py" "$step"; do
  [ -e "$f" ] || { echo "llmc_compare: $f not found" >&2; exit 2; }
done
mkdir -p "$out"
gcc -Ofast -Wno-unused-result -march=native -fopenmp -DOMP "$llmc/bench/time_gpt2.c" -lm -o "$out/time_gpt2"
/usr/bin/python3 "$llmc/bench/make_inputs.py" model "$out/model.bin" --layers "$L" --heads "$H" --width "$C" \
  --ctx "$ctx"
/usr/bin/python3 "$llmc/bench/make_inputs.py" tokens "$out/tokens.bin" --random $((B * T * (steps + 2) + 1))
: > "$out/rounds.jsonl"
for ((r = 0; r < rounds; r++)); do
  OMP_NUM_THREADS=$threads "$out/time_gpt2" "$out/model.bin" "$out/tokens.bin" "$B" "$T" "$steps" |
    tail -n 1 >> "$out/rounds.jsonl"
  "$step" "$L" "$H" "$C" "$ctx" "$B" "$T" "$steps" "$threads" | tail -n 1 >> "$out/rounds.jsonl"
done
/usr/bin/python3 - "$out" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/rounds.jsonl") if l.strip()]
med = {p: statistics.median(r["median_tokens_per_s"] for r in rows if r["program"] == p) for p in ("llm.c", "lowrank")}
r0 = rows[0]
s = {"B": r0["B"], "T": r0["T"], "L": r0["L"], "NH": r0["NH"], "C": r0["C"], "threads": r0["threads"],
     "rounds": len(rows) // 2, "llmc_tokens_per_s": med["llm.c"], "lowrank_tokens_per_s": med["lowrank"],
     "lowrank_over_llmc": med["lowrank"] / med["llm.c"]}
json.dump(s, open(f"{out}/summary.json", "w"))
print(json.dumps(s))
EOF
