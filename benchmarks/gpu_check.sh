#!/usr/bin/env bash
# One device call checks the GPU path (issue 13): the gpu-marked tests (every training verb from
# the CLI on cuda), the training throughput benchmark (SmolLM-135M shape; the 16M student + 31M
# teacher KD step) and the recovery benchmark at 8M tokens per setting, in ~8 minutes, figures
# written as markdown under OUT (default benchmarks/gpu_check/).
#
#   benchmarks/gpu_check.sh TEACHER_DIR TRAIN_TEXT VALID_TEXT [OUT]
#
#   TEACHER_DIR  the reference teacher (shared/refmodels/smol-llama-32m, ~60 MiB)
#   TRAIN_TEXT   .txt or .txt.xz training text, e.g. a slice of shared/refcorpus/train.txt.xz:
#                xz -dc train.txt.xz | head -c 12000000 | xz -9 > slice.txt.xz   (~2 MiB, ~2.7M tokens)
#   VALID_TEXT   shared/refcorpus/valid.txt (1.6 MiB; scored whole, as the README's figures are)
#
# Environment: PYTHON (default python3) with torch (CUDA) and edgeprune's dependencies;
# QUICK=1 shrinks every step (a syntax / plumbing check that also runs on a CPU machine);
# STEP_BUDGETS="tests throughput recovery" seconds (default "200 150 330").
# Each step runs under its own timeout; a failing or timed-out step is reported and the next
# one still runs. Exit code: the number of failed steps.
set -u -o pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 TEACHER_DIR TRAIN_TEXT VALID_TEXT [OUT]" >&2
    exit 2
fi
TEACHER=$1
TRAIN=$2
VALID=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${4:-$HERE/gpu_check}
PY=${PYTHON:-python3}
QUICK=${QUICK:-0}
read -r T_TESTS T_THROUGHPUT T_RECOVERY <<< "${STEP_BUDGETS:-200 150 330}"
for f in "$TEACHER/config.json" "$TRAIN" "$VALID"; do
    [ -e "$f" ] || { echo "gpu_check: $f does not exist" >&2; exit 2; }
done
mkdir -p "$OUT"
cd "$ROOT" || exit 2
export EDGEPRUNE_CACHE=${EDGEPRUNE_CACHE:-$OUT/cache}
export TOKENIZERS_PARALLELISM=true
SUMMARY=$OUT/gpu_check.md
FAILED=0

# edgeprune importable from this checkout (no network on the device: no dependency install)
if ! "$PY" -c "import edgeprune.train.loop" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null 2>&1 || true
fi
"$PY" - > "$OUT/env.txt" 2>&1 <<'EOF'
import platform, torch
import edgeprune
print(f"host {platform.node()}, python {platform.python_version()}, torch {torch.__version__}, "
      f"cuda {torch.version.cuda}, edgeprune from {edgeprune.__file__}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print(f"cuda:{i} {torch.cuda.get_device_name(i)}, "
              f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB")
else:
    print("no CUDA device visible")
EOF
ENV_RC=$?
DEVICE=cuda
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    DEVICE=cpu
    [ "$QUICK" = 1 ] || { echo "gpu_check: no CUDA device (QUICK=1 runs the reduced check on CPU)" >&2; cat "$OUT/env.txt" >&2; exit 2; }
fi

{
    echo "# GPU check (benchmarks/gpu_check.sh)"
    echo
    echo "Command: \`benchmarks/gpu_check.sh $*\` (QUICK=$QUICK, device $DEVICE), started $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    cat "$OUT/env.txt"
    echo '```'
    echo
    echo "| step | exit code | seconds | output |"
    echo "|---|---|---|---|"
} > "$SUMMARY"
[ $ENV_RC -eq 0 ] || FAILED=$((FAILED + 1))

step() {  # step NAME BUDGET_S LOGFILE COMMAND...
    local name=$1 budget=$2 log=$3
    shift 3
    local t0=$SECONDS
    echo "== $name (budget ${budget}s)" >&2
    timeout --signal=INT --kill-after=20 "$budget" "$@" > "$log" 2>&1
    local rc=$?
    local dt=$((SECONDS - t0))
    [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
    echo "| $name | $rc$([ $rc -eq 124 ] && echo ' (timeout)') | $dt | $(basename "$log") |" >> "$SUMMARY"
    tail -n 3 "$log" >&2
}

# 1. gpu-marked tests: every training verb from the CLI on cuda (skipped without CUDA)
if [ "$QUICK" = 1 ]; then TESTS=(tests/core/test_torch_device.py tests/train/test_gpu_cli.py); else
    TESTS=(tests/train/test_gpu_cli.py tests/train/test_options.py tests/train/test_losses.py tests/core/test_torch_device.py); fi
step "gpu tests" "$T_TESTS" "$OUT/gpu_tests.txt" "$PY" -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}"

# 2. throughput: SmolLM-135M shape (16 x 2048, bf16, compile on) and the KD recovery step of
#    the 16.3M student with the 31M teacher (the reference shapes), tokens/s and MFU
if [ "$QUICK" = 1 ]; then
    TP=(--preset tiny --steps 2 --warmup 1 --seq-len 64 --micro-batch 2 --compile off)
    KD=(--preset tiny --teacher-preset tiny --layers 2 --steps 2 --warmup 1 --seq-len 64 --micro-batch 2 --compile off)
else
    TP=(--preset smollm-135m --steps 10 --warmup 3 --seq-len 2048 --micro-batch 16 --compile on)
    KD=(--preset smol-llama-32m --layers 12 --ffn 384 --teacher-preset smol-llama-32m --steps 10 --warmup 3
        --seq-len 1024 --micro-batch 64 --compile on)
fi
step "throughput smollm-135m" "$((T_THROUGHPUT / 2))" "$OUT/throughput.txt" \
    "$PY" benchmarks/train_throughput.py "${TP[@]}" --device "$DEVICE" --out "$OUT/train_throughput"
step "throughput 16M+31M KD" "$((T_THROUGHPUT / 2))" "$OUT/throughput_kd.txt" \
    "$PY" benchmarks/train_throughput.py "${KD[@]}" --device "$DEVICE" --out "$OUT/train_throughput_kd"

# 3. recovery at 8M tokens per setting (adapt 50%), all of VALID scored, incremental at equal tokens
#    (first setting = the default recipe with a teacher); the auto batch (64 x 1024) against 16 x 1024,
#    the issue run's KD mix (α 0.5, T 2, lr 3e-4, 16 x 1024; WSD here, cosine there), CE only, window
#    256, lr 1e-3. Rows are written as each finishes: a timeout keeps the finished ones.
if [ "$QUICK" = 1 ]; then
    REC=(--tokens 4096 --eval-tokens 2048 --train-chars 300000 --seq-len 128 --micro-batch 2 --calib-samples 4
         --calib-len 64
         --settings "ce-lr1e-3:kd_alpha=0,lr=1e-3;kd1-lr1e-3:kd_alpha=1,kd_temp=1,lr=1e-3" --incremental-stages 2)
else
    REC=(--tokens 8M --eval-tokens 0 --compile --incremental-stages 6
         --settings "kd1-lr3e-4:kd_alpha=1,kd_temp=1,lr=3e-4;kd1-lr3e-4-b16:kd_alpha=1,kd_temp=1,lr=3e-4,micro_batch=16;kd.5T2-lr3e-4-b16:kd_alpha=0.5,kd_temp=2,lr=3e-4,micro_batch=16;ce-lr3e-4:kd_alpha=0,lr=3e-4;kd1-lr3e-4-seq256:kd_alpha=1,kd_temp=1,lr=3e-4,seq_len=256;kd1-lr1e-3:kd_alpha=1,kd_temp=1,lr=1e-3")
fi
step "recovery 8M tokens" "$T_RECOVERY" "$OUT/recovery.txt" \
    "$PY" benchmarks/recovery_settings.py --teacher "$TEACHER" --train "$TRAIN" --valid "$VALID" \
    --device "$DEVICE" "${REC[@]}" --out "$OUT/recovery_settings_gpu"

{
    echo
    for md in "$OUT/train_throughput.md" "$OUT/train_throughput_kd.md" "$OUT/recovery_settings_gpu.md"; do
        [ -f "$md" ] && { echo "## $(basename "$md")"; echo; cat "$md"; echo; }
    done
    echo "## gpu tests (tail)"
    echo
    echo '```'
    tail -n 15 "$OUT/gpu_tests.txt" 2>/dev/null
    echo '```'
} >> "$SUMMARY"
echo "gpu_check: $FAILED failed step(s); summary in $SUMMARY" >&2
exit $FAILED
