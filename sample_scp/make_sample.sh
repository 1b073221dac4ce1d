#!/usr/bin/env bash
# Regenerates the shipped sample corpus from text with espeak-ng and sox (Debian packages).
# Everything here is synthetic speech made by this script, so the project may ship it.
# The "emotions" are acted by prosody only (pitch, rate, loudness): a plumbing sample, not data
# to judge a model by. Paths in wav.scp are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
d=sample_scp
rm -rf "$d/wav"; mkdir -p "$d/wav"
: > "$d/wav.scp"; : > "$d/utt2spk"; : > "$d/utt2emo"

# id speaker voice emotion espeak-args format text
while IFS='|' read -r id spk voice emo args fmt text; do
  tmp=$(mktemp --suffix=.wav)
  # shellcheck disable=SC2086
  espeak-ng -v "$voice" $args -w "$tmp" "$text"
  case "$fmt" in
    wav22)  out="$d/wav/$id.wav";  cp "$tmp" "$out" ;;                        # 22.05 kHz 16-bit mono
    wav16)  out="$d/wav/$id.wav";  sox "$tmp" -r 16000 -b 16 "$out" ;;        # 16 kHz
    flac44) out="$d/wav/$id.flac"; sox "$tmp" -r 44100 -b 24 "$out" ;;        # 44.1 kHz 24-bit FLAC
    st48)   out="$d/wav/$id.wav";  sox "$tmp" -r 48000 -c 2 "$out" ;;         # 48 kHz stereo
    fl8)    out="$d/wav/$id.wav";  sox "$tmp" -r 8000 -e floating-point -b 32 "$out" ;; # 8 kHz float
  esac
  rm -f "$tmp"
  echo "$spk-$id $out" >> "$d/wav.scp"
  echo "$spk-$id $spk" >> "$d/utt2spk"
  echo "$spk-$id $emo" >> "$d/utt2emo"
done <<'LIST'
u01|spkA|en-us+m3|neutral|-s 160 -p 45|wav22|The meeting starts at nine tomorrow morning.
u02|spkA|en-us+m3|happy|-s 200 -p 75 -a 140|wav16|We won the match, this is wonderful news!
u03|spkA|en-us+m3|sad|-s 110 -p 25 -a 70|flac44|I miss the old house and the garden.
u04|spkA|en-us+m3|angry|-s 190 -p 40 -a 190|st48|Stop doing that right now, I told you twice.
u05|spkB|en-gb+f3|neutral|-s 160 -p 50|wav16|Please put the books back on the shelf.
u06|spkB|en-gb+f3|happy|-s 210 -p 85 -a 140|wav22|What a lovely surprise to see you here!
u07|spkB|en-gb+f3|sad|-s 105 -p 30 -a 70|fl8|Nobody called me on my birthday this year.
u08|spkB|en-gb+f3|angry|-s 195 -p 45 -a 190|flac44|This is the third time the train is late.
LIST
LC_ALL=C sort -o "$d/wav.scp" "$d/wav.scp"
LC_ALL=C sort -o "$d/utt2spk" "$d/utt2spk"
LC_ALL=C sort -o "$d/utt2emo" "$d/utt2emo"
echo "wrote $(wc -l < "$d/wav.scp") utterances to $d/"
