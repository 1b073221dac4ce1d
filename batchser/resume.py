"""What a resume finds before it loads anything: a complete run with the same settings and
nothing left to do finishes at once, without loading a model (the check reads settings.json,
the manifest and the committed ids only)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from .config import RunSummary
from .plan import RunPlan
from .records import Corpus
from .store import atomic, committed_ids, committed_table, layout, verify


def nothing_left(plan: RunPlan, chunks: Iterator[Corpus], out: Path, *, reopen: Callable[[], Iterator[Corpus]]
                 ) -> Tuple[Optional[RunSummary], Optional[Iterator[Corpus]]]:
    """A resume of a complete run with the same settings and nothing left to do is told from the
    committed ids and settings.json alone, without loading a model: (its summary, None). Else
    (None, the chunks to run: the same ones, or read again when this check consumed some)."""
    man, settings = out / layout.MANIFEST, out / layout.SETTINGS
    if not (man.exists() and settings.exists()):
        return None, chunks
    try:
        done_before = json.loads(man.read_text(encoding="utf-8"))
        if done_before.get("status") != "complete" or not plan.settled_without_models(
                json.loads(settings.read_text(encoding="utf-8"))):
            return None, chunks
    except ValueError:  # unreadable: the writer says which file
        return None, chunks
    if verify.problems(out, tables=(layout.LABELS, layout.ERRORS)):  # damaged: not done; a run refuses or redoes it
        return None, chunks
    committed = committed_table(out, layout.LABELS, layout.ERRORS)
    s = RunSummary(out_dir=str(out), shard=plan.shard.name if plan.shard else None)
    for c in chunks:
        ids = [u.utt_id for u in c.utterances] + [e.utt_id for e in c.errors]
        if not committed.contains(ids).all():
            return None, reopen()
        s.n_input += c.n_input
        s.n_skipped += c.n_input
    _, err_ids = committed_ids(out)
    s.n_failed_total = len(err_ids)
    done_before["counts"].update(input=s.n_input, ok_this_run=0, errors_this_run=0, skipped_already_done=s.n_skipped,
                                 input_in_errors=s.n_failed_total)
    done_before.update(command=plan.cfg.argv, audio_hours=0.0, x_real_time=None, utterances_per_second=None)
    atomic.write_text(man, json.dumps(done_before, indent=2, default=str) + "\n")  # what this run did: nothing
    return s, None
