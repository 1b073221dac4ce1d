#!/usr/bin/env bash
# Prepare the one-shot GPU check (bench/gpu_check.sh) here, before a device window opens.
#
#   bash bench/gpu_prepare.sh [CORPUS]      # CORPUS default: ../shared/corpora/ravdess
#
# The device machine has torch, transformers, pyarrow, pandas, scipy, click, tqdm, yaml, but not
# funasr and its import-time dependencies, nor libsndfile/soxr; it reaches no package index. This
# downloads those as Python 3.12 manylinux wheels into .whl/ (building pure-Python sdists into
# wheels) and copies 16 kHz decoded audio of CORPUS into .gpudata/ (../shared does not travel).
# Both folders are git-ignored through .git/info/exclude; carry them: carry=[".whl", ".gpudata"].
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-../shared/corpora/ravdess}
PY=${PYTHON:-python3}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo '/.gpudata/' >> .git/info/exclude
mkdir -p .whl .gpudata
# what `import funasr` and emotion2vec's loading import that the device image lacks (seen with
# python -X importtime), plus batchser's own decoding stack
PKGS="funasr hydra-core omegaconf antlr4-python3-runtime==4.9.3 jaconv jamo jieba kaldiio librosa audioread
pooch platformdirs modelscope rapidfuzz tensorboardX torch-complex websockets soundfile cffi pycparser soxr
praat-parselmouth decorator msgpack"
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any"
# the versions this checkout's CI installs where known (they work together: hydra-core 1.3 wants
# omegaconf < 2.4, ...), else the newest
pin() { $PY -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }
for p in $PKGS; do
  case "$p" in *==*) ;; *) v=$(pin "$p"); [ -n "$v" ] && p="$p==$v" ;; esac
  if ! $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
       $PLAT -d .whl "$p" 2>/dev/null; then
    $PY -m pip wheel -q --no-deps -w .whl "$p"   # a pure-Python sdist (jieba): build the wheel here
  fi
done
# modelscope's hub client is a separate distribution in recent versions
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
  modelscope-hub 2>/dev/null || true
# 16 kHz float copies of the corpus (and its utt2spk/utt2emo) for the parity test and the benches
PYTHONPATH=$PWD $PY - "$CORPUS" <<'PYEOF'
import shutil, sys
from pathlib import Path
import soundfile as sf
from batchser.audio import load_utterance
from batchser.corpus import read_corpus
src = Path(sys.argv[1]); dst = Path(".gpudata/corpus"); (dst / "wav").mkdir(parents=True, exist_ok=True)
c = read_corpus(src, audio_root=str(src))
lines = []
for u in c.utterances:
    p = dst / "wav" / f"{u.utt_id}.flac"
    sf.write(str(p), load_utterance(u), 16000, subtype="PCM_16")
    lines.append(f"{u.utt_id} .gpudata/corpus/wav/{p.name}\n")
(dst / "wav.scp").write_text("".join(lines))
for t in ("utt2spk", "utt2emo"):
    if (src / t).exists():
        shutil.copy(src / t, dst / t)
print(f"{len(lines)} utterances -> {dst}")
PYEOF
du -sh .whl .gpudata
