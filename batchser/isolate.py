"""One bad item never costs its batch-mates: run a batch, and when it fails run each item alone.

Used by the stages that call a model on a list (transcripts, explanations). When every item of a
batch of several fails alone too, the model is at fault (a missing CUDA library, a broken
device), not the items: ``failure`` is raised instead of blaming each of them.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Type


def each_alone(run: Callable[[Sequence], List], items: Sequence, ids: Sequence[str], *, what: str,
               failure: Type[Exception]) -> Tuple[List[Optional[object]], List[Optional[str]]]:
    """``run(items)``'s outputs, or per item the error (``"<id>: <what> failed: ..."``).

    Raises:
        failure: several items failed, together and each alone.
    """
    try:
        return list(run(items)), [None] * len(items)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:
        if len(items) == 1:
            return [None], [f"{ids[0]}: {what} failed: {type(e).__name__}: {e}"]
        first = e
    out: List[Optional[object]] = []
    errs: List[Optional[str]] = []
    for x, i in zip(items, ids):
        o, e = each_alone(run, [x], [i], what=what, failure=failure)
        out += o
        errs += e
    if all(e is not None for e in errs):
        shown = f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        raise failure(f"the {what} failed on a batch of {len(ids)} ({shown}) and on each of them alone: "
                      f"{type(first).__name__}: {first}. This is not one utterance's fault, so the run stops instead "
                      "of blaming them") from first
    return out, errs
