#!/usr/bin/env bash
# RAVDESS speech emotion recognition with batchser, Kaldi-recipe style.
#
#   recipes/ravdess/run.sh --ravdess /path/to/Audio_Speech_Actors_01-24 [--model emotion2vec_plus_large]
#                          [--stage 0] [--stop-stage 2] [--exp exp/ravdess]
#
# Stages: 0 prepare data/ravdess from the extracted download (emotion from the file name);
#         1 batchser run; 2 batchser eval (calm merged into neutral) + per-speaker summary.
set -euo pipefail
ravdess=
model=emotion2vec_plus_base
stage=0
stop_stage=2
data=data/ravdess
exp=exp/ravdess
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ravdess) ravdess=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$ravdess" ] || { echo "stage 0 needs --ravdess DIR" >&2; exit 2; }
  python3 "$here/local/prepare_data.py" "$ravdess" "$data"
  batchser info "$data" --no-probe | head -n 12
fi
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # exit code 1 = finished with some utterances in errors/: evaluation still makes sense
  batchser run "$data" --out "$exp" --model "$model" ${extra[@]+"${extra[@]}"} || [ $? -eq 1 ]
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  batchser eval "$exp" --ref "$data/utt2emo" --label-map ravdess
  batchser summarize "$exp" --by spk --png
fi
