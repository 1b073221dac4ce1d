"""``batchser report``: one self-contained HTML page of a run."""
from __future__ import annotations

import click

from .app import main, reports_errors


@main.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "dest", type=click.Path(dir_okay=False), default=None,
              help="Where to write the page [default: OUT/report.html].")
@click.option("--rec", "recs", multiple=True, metavar="REC",
              help="Draw the emotion timeline of this recording (repeatable) [default: the longest few with "
                   "several segments].")
@reports_errors
def report(out_dir, dest, recs):
    """Write one HTML page of OUT: the run, labels, scores, metrics, timelines, errors.

    \b
    Everything is inline (figures as images in the file, no script, no network at
    view time): mail it, open it offline, print it. It shows the run (input, model
    and its sha256, settings, device, counts, speed, warnings, out-of-memory
    back-offs; a test model or an unfinished run in red at the top), the label
    distribution overall and by speaker (the largest 20, the rest as one row), the
    score histogram, the metrics against the references (eval/metrics.json, or
    computed here without writing into OUT), WER (eval/wer.json) and CCC
    (eval/dims.json) when eval wrote them, emotion over time for long recordings,
    the errors by stage with their first messages, and the shards of a merge.
    """
    from ..report import report as write_report

    click.echo(f"wrote {write_report(out_dir, dest, recs or None)}", err=True)
