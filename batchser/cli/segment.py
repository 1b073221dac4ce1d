"""Long recordings: ``batchser segment`` (VAD -> a Kaldi data dir) and ``plot`` (emotion over time)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .app import EXIT_PARTIAL, main, reports_errors, vad_options, vad_opts


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
    from ..segment import segment as do_segment

    opts = vad_opts(vad_kw)
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
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--rec", default=None,
              help="The recording to draw (its rec_id in labels/); without it, OUT's only recording, or a list of them.")
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
    from ..corpus import safe_filename
    from ..plot import plot_recording

    if rec is None:
        from ..store import open_results

        recs = sorted(open_results(out_dir).labels_table().column("rec_id").unique().to_pylist())
        if len(recs) != 1:
            shown = "\n  ".join(recs[:30]) + (f"\n  ... ({len(recs)} in all)" if len(recs) > 30 else "")
            raise click.UsageError(f"{out_dir} holds {len(recs)} recordings: name one with --rec REC:\n  {shown}")
        rec = recs[0]
    target = Path(png) if png else Path(out_dir) / "plots" / f"{safe_filename(rec)}.png"
    click.echo(f"wrote {plot_recording(out_dir, rec, target)}", err=True)


