"""Corpora and output directories: ``info``, ``prepare``, ``features``, ``export``, ``merge``, ``make-test-model``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .app import EXIT_PARTIAL, feature_sets, main, reports_errors


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

    from ..corpus import read_corpus
    from ..info import format_text, summarise

    c = read_corpus(input_path, audio_root=audio_root, allow_pipes=not no_pipes)
    s = summarise(c, probe=not no_probe)
    click.echo(json.dumps(s, indent=2) if as_json else format_text(s))
    if s["unusable"]:
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

    from ..prepare import prepare as do_prepare

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
    click.echo((f"wrote {', '.join(r.written)} in {r.data_dir}" if r.written else f"wrote nothing in {r.data_dir}")
               + f": {r.measured} measured ({rate:.0f} per second per process), {r.known} already known, "
               f"{len(r.errors)} unreadable", err=True)
    if r.errors:
        from ..records import CHECK_HINT

        click.echo(CHECK_HINT.format(path=data), err=True)
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--kaldi", "kaldi_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for utt2emo_hyp, utt2score (+ classes.txt), text (a run --asr) and "
                   "embeddings.ark/.scp.")
@reports_errors
def export(out_dir, kaldi_dir):
    """Write OUT's results in the forms Kaldi and ESPnet tools read.

    \b
    utt2emo_hyp     <utt> <label>
    utt2score       <utt> <score per class>, classes in classes.txt
    utt2dim         <utt> <value per dimension> (a regression head), names in dims.txt
    text            <utt> <transcript> (a run --asr: compute-wer ark:ref_text ark:text)
    embeddings.scp  float32 vectors in embeddings.ark (kaldiio.load_scp, copy-vector)
    """
    from ..store.export import export_kaldi

    n = export_kaldi(out_dir, kaldi_dir)
    click.echo(f"wrote {', '.join(f'{k} ({v})' for k, v in n.items())} in {kaldi_dir}")



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
    from ..features import run_features
    from ..loader import parse_feature_sets

    s = run_features(input_path, out, audio_root=audio_root, allow_pipes=not no_pipes, num_workers=num_workers,
                     log=lambda m: click.echo(m, err=True), features=parse_feature_sets(feature_sets(feature_set)))
    o = Path(out)
    click.echo(f"done: {s.n_ok} ok, {s.n_errors} errors, {s.n_skipped} already done; "
               f"{s.audio_seconds / 60:.1f} min of audio in {s.wall_seconds:.1f} s\n"
               f"features: {o / 'features'}/  errors: {o / 'errors'}/"
               + (f"  explanations: {o / 'explanations.parquet'}" if (o / "explanations.parquet").exists() else "")
               + f"\nread it with batchser.open_results({str(o)!r}).features", err=True)
    if s.n_failed_total:
        sys.exit(EXIT_PARTIAL)



@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@reports_errors
def merge(out_dir):
    """Join the shards of an array job (OUT/shards/*) into OUT as one dataset.

    Exits 1, naming them, when shards are missing, unfinished or failed (re-submit those array
    indices: they resume), and, as run does, when the merged errors/ table is not empty.
    Re-running merge is harmless.
    """
    from ..prosody import explanations
    from ..store import merge as do_merge

    s = do_merge(out_dir, explain=explanations)
    c = s["counts"]
    click.echo(f"merged {s['merged_shards']} shards into {out_dir}: {c['results_total']} results, "
               f"{c['errors_total']} errors, {s['audio_hours']:.3f} h of audio")
    if c["errors_total"]:  # as for run: 0 only when every utterance is in labels/
        sys.exit(EXIT_PARTIAL)



@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@reports_errors
def verify(out_dir):
    """Check that every committed part of OUT is whole (after copying results between filesystems).

    \b
    Parquet footers and row counts; each embeddings/frames .npy part's header, length and rows
    against its labels part; timeline parts; head predictions; shards likewise. Exits 0 when
    all are whole, 1 naming each damaged file and what to do. Reads headers, not whole files.
    """
    from ..store import layout, verify as check

    out = Path(out_dir)
    dirs = [out] + sorted(p for p in (out / layout.SHARDS).glob("shard-*") if p.is_dir())
    found, n_parts = [], 0
    for d in dirs:
        n_parts += len(layout.parts(d, layout.LABELS))
        found += [f"{d / f}" if d != out else f for f in check.problems(d)]
    if found:
        click.echo(check.advice(out, found))
        sys.exit(EXIT_PARTIAL)
    click.echo(f"{out}: every part is whole ({n_parts} labels part{'s' if n_parts != 1 else ''}"
               + (f", {len(dirs) - 1} shards" if len(dirs) > 1 else "") + ")")


@main.command("make-test-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(["emotion2vec", "emotion2vec-nohead", "whisper", "wav2vec2",
                                          "wav2vec2-multilabel", "wav2vec2-regression", "w2v2-dim", "whisper-asr",
                                          "whisper-asr-en", "whisper-asr-ct2", "causal-lm"]),
              default="emotion2vec", show_default=True,
              help="Architecture: emotion2vec+ (funasr layout); emotion2vec without classifier (like "
                   "emotion2vec_base); WhisperForAudioClassification; Wav2Vec2ForSequenceClassification with a "
                   "single-label, multi-label (sigmoid) or regression head (config problem_type); w2v2-dim: "
                   "audEERING's dimensional model layout (arousal, dominance, valence); whisper-asr(-en): a "
                   "multilingual (English-only) WhisperForConditionalGeneration with tokenizer and generation config, "
                   "for --asr; whisper-asr-ct2: that model converted to CTranslate2 (faster-whisper); causal-lm: a tiny "
                   "LlamaForCausalLM with a real tokenizer and chat template, for batchser explain --llm.")
@click.option("--size", default="tiny", show_default=True,
              help="tiny (tests); emotion2vec: base, large; whisper: large-v3; w2v2-dim: large-robust-12.")
@click.option("--seed", type=int, default=0, show_default=True)
def make_test_model(out_dir, kind, size, seed):
    """Write a RANDOM-WEIGHT model directory of a real architecture, in the real on-disk layout.

    For offline plumbing tests and benchmarks only: its predictions mean nothing.
    """
    from .. import testmodels

    try:
        if kind == "causal-lm":
            path = testmodels.make_causal_lm_dir(out_dir, seed=seed)
        elif kind == "whisper":
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


