"""Length bucketing: batches of similar lengths, sized by a total-audio budget.

Sorting by duration keeps padding low; sizing by ``batch_seconds`` (padded seconds per batch)
puts many short clips in one batch and few long ones, so memory use per batch stays flat.
"""
from __future__ import annotations

from typing import List, Optional, Sequence


def make_batches(durations: Sequence[Optional[float]], batch_seconds: float, max_batch_size: int,
                 assume_seconds: float = 10.0) -> List[List[int]]:
    """Group indices into batches, longest first.

    ``durations`` may hold ``None`` (unknown without decoding); those are treated as
    ``assume_seconds`` long and batched after the known ones.
    A batch's cost is ``len(batch) * longest`` (padded seconds); it never exceeds
    ``batch_seconds`` unless a single utterance does.
    """
    if batch_seconds <= 0 or max_batch_size < 1:
        raise ValueError("batch_seconds must be > 0 and max_batch_size >= 1")
    known = sorted((i for i, d in enumerate(durations) if d is not None), key=lambda i: -float(durations[i]))
    unknown = [i for i, d in enumerate(durations) if d is None]
    batches: List[List[int]] = []

    def fill(order: List[int], dur) -> None:
        cur: List[int] = []
        longest = 0.0
        for i in order:
            d = max(dur(i), 1e-3)
            new_longest = max(longest, d)
            if cur and (len(cur) + 1 > max_batch_size or (len(cur) + 1) * new_longest > batch_seconds):
                batches.append(cur)
                cur, new_longest = [], d
            cur.append(i)
            longest = new_longest
        if cur:
            batches.append(cur)

    fill(known, lambda i: float(durations[i]))
    fill(unknown, lambda i: assume_seconds)
    return batches
