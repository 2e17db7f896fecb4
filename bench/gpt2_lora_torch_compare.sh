#!/bin/bash
# lowrank's GPT-2 LoRA fine-tuning step (bench/gpt2_lora_step) against PyTorch 1.13 doing the same
# step (tests/reference/gpt2_lora_train_reference.py), run alternately (PyTorch, lowrank, PyTorch,
# ...) at each thread count so both see the same machine load; the issue's goal is lowrank >= 2x
# PyTorch's tokens/s at 1 and 2 threads.
#
#   bench/gpt2_lora_torch_compare.sh GPT2_LORA_STEP OUTDIR [ROUNDS] [STEPS] [PRESET] [B] [T] [THREADS...]
#
# GPT2_LORA_STEP: the bench/gpt2_lora_step binary (Release build). Defaults: 3 rounds, 6 steps a
# run (the first untimed), the small preset at batch 8 x 256 (bench/gpt2_lora_bench's LoRA row),
# threads 1 and 2. Both sides: LoRA r = 8, alpha 16 on query and value, the base frozen, AdamW on
# the adapters (lr 1e-4, betas 0.9/0.95, no decay), clipping at 1.0, no dropout, random ids.
# Output: OUTDIR/rounds.jsonl (every run's summary line) and OUTDIR/summary.jsonl (per thread
# count: the median over the rounds of each side's median tokens/s, and the median of the
# per-round ratios lowrank/PyTorch), also printed.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n 2,15p "$0" >&2
  exit 2
fi
step=$1 out=$2 rounds=${3:-3} steps=${4:-6} preset=${5:-small} B=${6:-8} T=${7:-256}
shift $(($# < 7 ? $# : 7))
threads_list=("$@")
[ ${#threads_list[@]} -gt 0 ] || threads_list=(1 2)
ref=$(cd "$(dirname "$0")/.." && pwd)/tests/reference/gpt2_lora_train_reference.py
for f in "$step" "$ref"; do
  [ -e "$f" ] || { echo "gpt2_lora_torch_compare: $f not found" >&2; exit 2; }
done
mkdir -p "$out"
: > "$out/rounds.jsonl"
for threads in "${threads_list[@]}"; do
  for ((r = 0; r < rounds; r++)); do
    /usr/bin/python3 "$ref" --preset "$preset" --batch "$B" --seq-len "$T" --steps "$steps" --threads "$threads" |
      tail -n 1 | sed "s/^{/{\"round\": $r, /" >> "$out/rounds.jsonl"
    "$step" "$preset" "$B" "$T" "$steps" "$threads" | tail -n 1 | sed "s/^{/{\"round\": $r, /" >> "$out/rounds.jsonl"
  done
done
/usr/bin/python3 - "$out" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/rounds.jsonl") if l.strip()]
with open(f"{out}/summary.jsonl", "w") as f:
    for threads in sorted({r["threads"] for r in rows}):
        side = {p: {r["round"]: r["median_tokens_per_s"] for r in rows if r["threads"] == threads and r["program"] == p}
                for p in ("pytorch", "lowrank")}
        paired = sorted(set(side["pytorch"]) & set(side["lowrank"]))
        r0 = rows[0]
        s = {"preset": r0["preset"], "batch": r0["batch"], "seq_len": r0["seq_len"], "threads": threads,
             "rounds": len(paired),
             "pytorch_tokens_per_s": statistics.median(side["pytorch"][k] for k in paired),
             "lowrank_tokens_per_s": statistics.median(side["lowrank"][k] for k in paired),
             "lowrank_over_pytorch": statistics.median(side["lowrank"][k] / side["pytorch"][k] for k in paired)}
        f.write(json.dumps(s) + "\n")
        print(json.dumps(s))
EOF
