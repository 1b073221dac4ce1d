"""``run --timeline WIN[,HOP]``: class scores for every window of an utterance, over time.

The window rule (also in the README): windows are cut from the utterance's decoded 16 kHz
waveform, WIN seconds long, starting every HOP seconds from the utterance's start (sample
``round(k * HOP * 16000)``). Windows run while they fit inside the utterance; when the last one
ends before the utterance does, a *tail window* of WIN seconds ending exactly at the
utterance's end is added (it overlaps its predecessor more than HOP would), so every window
is WIN long and the whole utterance is covered. An utterance shorter than WIN gets one window:
itself. Each window is run as an utterance of its own (its result equals running the model on
that cut alone), batched by length with the other windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from .audio import TARGET_SR


@dataclass(frozen=True)
class TimelineOptions:
    win: float  # seconds
    hop: float  # seconds

    @property
    def win_samples(self) -> int:
        return int(round(self.win * TARGET_SR))

    def to_list(self) -> List[float]:
        return [self.win, self.hop]


def parse_timeline(text: Optional[object]) -> Optional[TimelineOptions]:
    """``"2,1"`` / ``"2"`` / ``(2, 1)`` / ``None`` -> options (HOP defaults to WIN: windows back to back).

    Raises:
        ValueError: not one or two positive numbers.
    """
    if text is None or isinstance(text, TimelineOptions):
        return text
    if isinstance(text, (int, float)):
        parts = [float(text)]
    elif isinstance(text, (list, tuple)):
        parts = [float(p) for p in text]
    else:
        try:
            parts = [float(p) for p in str(text).split(",")]
        except ValueError:
            parts = []
    if len(parts) == 1:
        parts.append(parts[0])
    if len(parts) != 2 or not all(p > 0 and p < float("inf") for p in parts):
        raise ValueError(f"--timeline {text!r}: expected WIN or WIN,HOP in seconds, both > 0 (e.g. 2,1)")
    win, hop = parts
    if round(win * TARGET_SR) < 1 or round(hop * TARGET_SR) < 1:
        raise ValueError(f"--timeline {text!r}: windows shorter than one sample")
    return TimelineOptions(win, hop)


def windows(n: int, opts: TimelineOptions) -> List[Tuple[int, int]]:
    """(start, end) samples of the windows of an utterance of ``n`` samples (the rule above)."""
    w = opts.win_samples
    if n <= w:
        return [(0, n)]
    out = []
    k = 0
    while True:
        a = int(round(k * opts.hop * TARGET_SR))
        if a + w > n:
            break
        out.append((a, a + w))
        k += 1
    if out[-1][1] < n:
        out.append((n - w, n))
    return out
