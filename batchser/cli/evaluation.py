"""``batchser eval`` (classes, dimensions, transcripts) and ``summarize``."""
from __future__ import annotations

import click

from .app import main, reports_errors


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
        from ..wer import evaluate_wer, format_wer_report

        if no_normalize and normalizer:
            raise click.UsageError("--no-normalize scores the raw text; --normalizer picks a normaliser: one of them")
        m = evaluate_wer(out_dir, ref_text=ref_text, normalize="none" if no_normalize else (normalizer or "english"),
                         eval_dir=eval_dir)
        click.echo(json.dumps(m, indent=2) if as_json else format_wer_report(m))
        return
    if ref_text or no_normalize or normalizer:
        raise click.UsageError("--ref-text, --normalizer and --no-normalize go with --wer")

    from ..evaluate import evaluate, evaluate_dims, format_dim_report, format_report, head_kind
    from ..store import open_results

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
    from ..evaluate import summarize as do_summarize

    path, df = do_summarize(out_dir, by=by, png=png)
    import pandas as pd

    with pd.option_context("display.max_columns", 12, "display.width", 120):
        click.echo(df.head(20).to_string(index=False))
    pic = path.with_suffix(".png")
    click.echo(f"wrote {path}" + (f", {pic}" if png and pic.exists() else ""))


