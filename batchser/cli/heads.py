"""Trained heads: ``batchser train-head`` and ``apply-head``."""
from __future__ import annotations

import click

from .app import main, reports_errors


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
    from ..heads import format_cv, train_head
    from ..policy import resolve_device

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
    from ..heads import apply_head

    r = apply_head(out_dir, head_dir)
    click.echo(f"head {r['head']}: {r['rows_written']} predictions in {r['parts_written']} new parts "
               f"({r['parts_kept']} kept) -> {r['dir']}/")


