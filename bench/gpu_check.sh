#!/usr/bin/env bash
# The one-shot GPU check (issue #26): run it whenever the device tool's status says a machine can
# be had, and put the figures in docs/performance.md. Fits one 10-minute call on an H100/H200.
#
#   here, once:  bash bench/gpu_prepare.sh            # wheels the device lacks + 16 kHz corpus copy
#   device:      run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpudata"], timeout_s=600)
#
# Steps, each with its own time limit so one slow step cannot eat the window:
#   1. the CUDA tests: fp32 on the GPU == funasr per utterance on the CPU; bf16 vs fp32 (cosine,
#      max score shift, argmax where the margin is clear); the suite's other CUDA-only tests
#   2. emotion2vec+ base: batchser vs funasr's loop, x real time, ratio, model FLOP utilisation of
#      the device's bf16 peak, and batchser's time split (waiting for audio / model / writing)
#   3. the same with batchser's float32 (AMP off), to separate AMP from batching
#   4. Whisper-large-v3 classifier (random weights): batchser vs pipeline(batch_size=16)
#   5. --asr, transformers engine, Whisper-large-v3 dimensions (random weights, 48 tokens): batchser
#      vs pipeline file by file and pipeline(batch_size=16), same texts counted
# Everything lands in $OUT (the device tool brings it back) and on stdout.
# A dry run of the script itself on a CPU (tiny models, few clips): DEVICE=cpu QUICK=1 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 BATCHSER_OFFLINE=1
if [ -d .whl ] && ! $PY -c "import funasr" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
DEVICE=${DEVICE:-cuda}
if [ "${QUICK:-0}" = 1 ]; then SIZE=tiny; WSIZE=tiny; NSYN=40; LIM=16; else SIZE=base; WSIZE=large-v3; NSYN=600; LIM=120; fi
CORPUS=${CORPUS:-.gpudata/corpus}
[ -f "$CORPUS/wav.scp" ] || CORPUS=sample_scp
ROOT=$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  echo "corpus: $CORPUS ($(wc -l < "$CORPUS/wav.scp") utterances)"; } | tee "$OUT/machine.txt"

step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${secs}s)"
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
}

step tests 150 $PY -m pytest -q -rs -s -p no:cacheprovider tests/test_emotion2vec_parity.py tests/test_gpu_readiness.py \
  -k "gpu or bf16 or cuda or fp16 or device"
step e2v_base_bf16 200 $PY bench/bench_emotion2vec.py --device "$DEVICE" --size $SIZE --corpus "$CORPUS" \
  --audio-root "$ROOT" --synthetic $NSYN --work /tmp/gc_e2v
step e2v_base_fp32 90 $PY bench/bench_emotion2vec.py --device "$DEVICE" --size $SIZE --corpus "$CORPUS" \
  --audio-root "$ROOT" --limit $LIM --dtype float32 --work /tmp/gc_e2v32
step whisper_large_v3 150 $PY bench/bench_transformers.py --kind whisper --size $WSIZE --device "$DEVICE" \
  --corpus "$CORPUS" --audio-root "$ROOT" --limit $LIM --batch-size 16 --work /tmp/gc_whisper
step asr_large_v3 120 $PY bench/bench_asr.py --skip ct2,run --device "$DEVICE" --size $WSIZE --files $((LIM / 3)) \
  --rounds 1 --batch-size 16 --max-length 48 --corpus "$CORPUS" --audio-root "$ROOT"
cp /tmp/gc_e2v/bench_result.json "$OUT/e2v_base_bf16.json" 2>/dev/null
cp /tmp/gc_e2v32/bench_result.json "$OUT/e2v_base_fp32.json" 2>/dev/null
echo "done: figures in $OUT"
