#!/usr/bin/env bash
# One device call: fine-tune the bundled weights on a GPU, export them, time CUDA inference.
#   scripts/prepare_data.sh .gpu_data             # here, once (the data travels as an ignored folder)
#   run(command="bash scripts/train_on_gpu.sh", carry=[".gpu_data"], timeout_s=560)
# Everything lands in $OUT (8 files at most come back): weights.safetensors (final, fp16),
# best.safetensors (best on the held-out images), log.jsonl, curve.png, train.log, bench_cuda.json.
# The same script dry-runs on a CPU in the tests: PRESET=tiny STEPS=150 INIT=none BENCH=0 PRECISION=fp32
# (STEPS fixes the length; without it, the schedule is sized to MINUTES by timing the first steps).
set -euo pipefail
DATA=${DATA:-.gpu_data}
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-6.5}        # training time, from the first step (data loading not counted)
PRESET=${PRESET:-full}
BATCH=${BATCH:-32}
PATCH=${PATCH:-48}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-300}
VAL_EVERY=${VAL_EVERY:-1000}
INIT=${INIT:-mdsr/weights/mdsr-bam-x234.safetensors}
BENCH=${BENCH:-1}
PRECISION=${PRECISION:-auto}   # auto: bf16 on the GPU (and on CPUs with native bf16)
# Checkpoints with optimizer state are too big to come back: they stay here, in a new folder per call (a second
# call on the same warm machine is a new run; mdsr train refuses to start one in an old run's folder).
RUN=${RUN:-/tmp/mdsr-gpu-run-$(date +%s)-$$}
CACHE=${CACHE:-/tmp/mdsr-gpu-lr-cache}  # the LR patches, reused by later calls
STEPS=${STEPS:-}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 - <<'PY'
import torch, safetensors, skimage, cv2, tqdm, matplotlib, PIL  # everything the run relies on
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
init_args=()
[ "$INIT" = none ] || init_args=(--init "$INIT")
max=$(python3 -c "print($MINUTES * 1.08 + 0.3)")  # hard stop, should the fitted schedule run long
length_args=(--fit-minutes "$MINUTES" --max-minutes "$max")
[ -z "$STEPS" ] || length_args=(--steps "$STEPS")
python3 -m mdsr train "$DATA"/train/* --out "$RUN" --preset "$PRESET" "${init_args[@]}" \
  --batch-size "$BATCH" --patch-size "$PATCH" --lr "$LR" --warmup "$WARMUP" "${length_args[@]}" --precision "$PRECISION" \
  --val-data "$DATA/val" --val-every "$VAL_EVERY" --checkpoint-every "$VAL_EVERY" \
  --log-every 50 --cache-dir "$CACHE" --workers "$(nproc)" --fp16-weights >"$OUT/train.log" 2>&1 \
  || { tail -c 4000 "$OUT/train.log"; exit 1; }
tr '\r' '\n' <"$OUT/train.log" | grep -a -E "validation|fit-minutes|time limit|rror" | tail -n 30 || true
cp "$RUN/weights.safetensors" "$RUN/log.jsonl" "$RUN/curve.png" "$OUT/"
[ -f "$RUN/best.pt" ] && python3 -m mdsr export "$RUN/best.pt" "$OUT/best.safetensors" --fp16 \
  --note "best on the held-out BSDS500-test images ($DATA/val)"
if [ "$BENCH" = 1 ]; then
  python3 benchmarks/bench_cuda.py --weights "$OUT/weights.safetensors" --scale 4 --json "$OUT/bench_cuda.json"
fi
ls -la "$OUT"
