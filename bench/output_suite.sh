#!/usr/bin/env bash
# Every kind of output batchser writes, into one folder: run it on two versions of the code and
# compare each pair with bench/compare_outputs.py (a refactor must not change one byte of results).
#
#   bash bench/output_suite.sh MODELS OUT [CORPUS]
#   PYTHONPATH=/tmp/old bash bench/output_suite.sh MODELS OUT_OLD     # the old code (a git worktree)
#   bash bench/output_suite.sh MODELS OUT_NEW
#   for d in OUT_OLD/*/; do python bench/compare_outputs.py "$d" "OUT_NEW/$(basename "$d")"; done
#
# MODELS: random-weight test models, made on the first call and shared by both sides. CORPUS:
# the RAVDESS data dir (default ../shared/corpora/ravdess). Needs espeak-ng-free inputs only:
# sample_scp, the corpus, and two long recordings made from it.
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1; R=$2; C=${3:-../shared/corpora/ravdess}
B="python -m batchser.cli"
mkdir -p "$M" "$R"
python -c "import batchser; print('batchser from', batchser.__file__)" >&2
[ -d "$M/e2v" ] || $B make-test-model "$M/e2v" >/dev/null
[ -d "$M/w2v2ml" ] || $B make-test-model "$M/w2v2ml" --kind wav2vec2-multilabel >/dev/null
[ -d "$M/dim" ] || $B make-test-model "$M/dim" --kind w2v2-dim >/dev/null
[ -d "$M/whisper" ] || $B make-test-model "$M/whisper" --kind whisper >/dev/null
if [ ! -f "$M/long/wav.scp" ]; then  # two recordings of 12 RAVDESS sentences each, 1.2-s pauses between
  mkdir -p "$M/long"
  python - "$C" "$M/long" <<'PY'
import sys
from pathlib import Path
import numpy as np, soundfile as sf
from batchser.audio import resample
c, out = Path(sys.argv[1]), Path(sys.argv[2])
lines = [l.split() for l in (c / "wav.scp").read_text().splitlines()][:24]
with open(out / "wav.scp", "w") as scp:
    for k in (0, 1):
        parts = []
        for _, f in lines[k::2]:
            x, sr = sf.read(c / f, dtype="float32")
            x = x.mean(axis=1) if x.ndim == 2 else x
            parts += [resample(x, sr), np.zeros(19200, np.float32)]
        sf.write(out / f"rec{k + 1}.wav", np.concatenate(parts), 16000, subtype="PCM_16")
        scp.write(f"rec{k + 1} {out / f'rec{k + 1}.wav'}\n")
PY
fi
q="-q --num-workers 1"
S=sample_scp/wav.scp
$B run $S --out "$R/sample" --model "$M/e2v" $q
$B run $S --out "$R/frames" --model "$M/e2v" --granularity frame --npy-layout per-utt --emb-dtype float16 $q
$B run $S --out "$R/timeline" --model "$M/e2v" --timeline 1,0.5 --part-size 3 $q
$B run $S --out "$R/asr" --model "$M/e2v" --asr tiny.en-offline $q
$B run $S --out "$R/multilabel" --model "$M/w2v2ml" --threshold 0.5 $q
$B run $S --out "$R/dim" --model "$M/dim" $q
$B run $S --out "$R/whisper" --model "$M/whisper" --max-seconds 2 $q
$B run $S --out "$R/devices" --model "$M/e2v" --device cpu,cpu --part-size 3 $q
$B run "$C" --audio-root "$C" --out "$R/ravdess" --model "$M/e2v" --features prosody,egemaps $q
$B train-head "$R/ravdess" --no-plot >/dev/null
$B apply-head "$R/ravdess" --head "$R/ravdess/heads/linear" >/dev/null
$B run $S --out "$R/head" --model "$M/e2v" --head "$R/ravdess/heads/linear" $q
for i in 0 1 2; do $B run "$C" --audio-root "$C" --out "$R/shards" --model "$M/e2v" --shard $i/3 $q; done
$B merge "$R/shards" >/dev/null
$B run "$M/long/wav.scp" --out "$R/vad" --model "$M/e2v" --vad --timeline 2 $q
$B features $S --out "$R/features" --set prosody,egemaps --num-workers 1 2>/dev/null
# bad input: every kind of error row
bad="$R/../bad_input"; mkdir -p "$bad"
printf 'ok1 sample_scp/wav/u01.wav\nmissing /nonexistent.wav\nmalformed\nok1 sample_scp/wav/u02.wav\npipe false |\n' > "$bad/wav.scp"
$B run "$bad/wav.scp" --out "$R/bad" --model "$M/e2v" $q || true
echo "suite done: $R" >&2
