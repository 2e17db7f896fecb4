#!/usr/bin/env bash
# Two ways to use two cores, paired: 2 processes x 1 thread (mpirun -np 2, data-parallel) against
# 1 process x 1 thread and 1 process x 2 threads, for the MLP's training epoch (train-mlp, full
# Fashion-MNIST), the small GPT-2's training step (gpt2 train, batch 8 x 256 tokens) and its LoRA
# step (gpt2 lora, rank 8 on query,value of a 1-step base, the same batch). Each round runs the
# three back to back; the figure is the median ratio over the rounds (a shared machine's load moves
# the three alike), with the all-reduce's share of the 2-rank steps. The job gpt2_124m is GPT-2 124M
# (random init) at batch 4 x 64 tokens, the issue's configuration; it is not in the default list
# (a few minutes a round).
#
#   bench/dist_scaling.sh [BUILD_DIR (build-cpu)] [ROUNDS (3)] [GPT2_STEPS (6)] [JOBS (mlp gpt2 lora)]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cpu}
ROUNDS=${2:-3}
STEPS=${3:-6}
JOBS=${4:-mlp gpt2 lora}
BIN=$BUILD/tools/lowrank
[ -x "$BIN" ] || { echo "dist_scaling: no $BIN (build it first)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "dist_scaling: no mpirun (tools/setup installs openmpi-bin)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --bind-to none -np 2)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# One run's figure from its --json summary: samples/s of the MLP epoch, tokens/s of the GPT-2 steps,
# and the all-reduce's share of the training time. Given a metrics.jsonl written with --log-every 1
# ($1), the GPT-2 rate leaves out the first step: it first touches every gradient and optimizer
# buffer, and with two processes faulting in ~2 GB each at once it took 4.0 s on GPT-2 124M against
# 1.6 s for the steps after it, most of a 4-step run's time.
figure() {
  python3 -c '
import json, os, sys
j = json.load(sys.stdin)
metrics = sys.argv[1] if len(sys.argv) > 1 else ""
if "runs" in j:  # gpt2 lora: the LoRA run is the first
    t = j["runs"][0]["train_seconds"]; rate = j["runs"][0]["tokens_per_s"]
elif "tokens_per_s" in j or "train_seconds" in j:
    t = j["train_seconds"]; rate = j["run_tokens"] / t
    steps = []
    if metrics and os.path.exists(metrics):
        steps = [r for r in map(json.loads, open(metrics)) if "tokens_per_s" in r]
    if len(steps) >= 2:
        rate = sum(r["tokens"] for r in steps[1:]) / sum(r["tokens"] / r["tokens_per_s"] for r in steps[1:])
else:
    t = j["seconds"]; rate = 1.0 / t
share = j.get("allreduce_seconds", 0.0) / t
print(f"{rate:.6g} {share:.4f}")' "$@"
}

mlp() {  # $1: launcher prefix ("" or mpirun), $2: threads
  $1 "$BIN" train-mlp --epochs 1 --threads "$2" --out "$TMP/mlp" --overwrite --quiet --json | figure
}
gpt2() {
  $1 "$BIN" gpt2 train --steps "$STEPS" --log-every 1 --val-every 0 --val-batches 1 --checkpoint-every 0 \
    --threads "$2" --out "$TMP/gpt2" --overwrite --cache-dir "$TMP" --quiet --json | figure "$TMP/gpt2/metrics.jsonl"
}
gpt2_124m() {
  $1 "$BIN" gpt2 train --preset gpt2 --batch 4 --seq-len 64 --steps "$STEPS" --log-every 1 --val-every 0 \
    --val-batches 1 --checkpoint-every 0 --threads "$2" --out "$TMP/gpt2_124m" --overwrite --cache-dir "$TMP" \
    --quiet --json | figure "$TMP/gpt2_124m/metrics.jsonl"
}
lora() {
  $1 "$BIN" gpt2 lora --model "$TMP/base" --data "$FORTUNES" --steps "$STEPS" --batch 8 --seq-len 256 \
    --val-every 0 --val-batches 1 --checkpoint-every 0 --no-compare-full --threads "$2" --out "$TMP/lora" \
    --overwrite --cache-dir "$TMP" --quiet --json | figure
}
FORTUNES=/usr/share/games/fortunes
if [[ " $JOBS " == *" lora "* ]]; then  # the base: the small GPT-2 after one step
  "$BIN" gpt2 train --steps 1 --warmup 0 --val-batches 1 --checkpoint-every 0 --out "$TMP/base" --cache-dir "$TMP" \
    --quiet >/dev/null
fi

for job in $JOBS; do
  r21=() r12=() share=()
  for ((i = 1; i <= ROUNDS; i++)); do
    read -r a _ < <($job "" 1)
    read -r b s < <($job "${MPIRUN[*]}" 1)
    read -r c _ < <($job "" 2)
    r21+=("$(python3 -c "print($b / $a)")")
    r12+=("$(python3 -c "print($b / $c)")")
    share+=("$s")
    echo "$job round $i: 1x1 $a  2x1 $b  1x2 $c  (per s; all-reduce share of 2x1: $s)" >&2
  done
  python3 - "$job" "${r21[*]}" "${r12[*]}" "${share[*]}" <<'PY'
import statistics, sys
job, a, b, s = sys.argv[1], *[list(map(float, x.split())) for x in sys.argv[2:]]
print(f"{job}: 2 processes x 1 thread = {statistics.median(a):.2f}x 1 x 1 thread, "
      f"{statistics.median(b):.2f}x 1 x 2 threads (median of {len(a)} rounds); "
      f"all-reduce {100 * statistics.median(s):.1f}% of the 2-rank training time")
PY
done
