"""Progress of a run where people look: a bar on a terminal, plain lines in a log file.

A SLURM task's stderr is a file: a tqdm bar there is either absent or a smear of carriage
returns. Off a terminal, one line every ``every`` seconds says utterances done of the total,
hours of audio, x real time, the ETA and the errors so far.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``progress(n_utterances, audio_seconds)`` after each batch; ``close()`` at the end.

    Args:
        total: utterances to process.
        enabled: False for ``-q``.
        every: seconds between plain lines off a terminal (0: none).
        log: where plain lines go (stderr, and the ``--log-file``).
        errors: the number of error rows so far (for the lines).
        unit: what is counted ("utterances", "recordings").
    """

    def __init__(self, total: int, *, enabled: bool, every: float = 30.0, log: Callable[[str], None] = print,
                 errors: Optional[Callable[[], int]] = None, unit: str = "utterances"):
        self.total, self.every, self.log, self.errors, self.unit = total, every, log, errors, unit
        self.t0 = self.last = time.time()
        self.done = 0
        self.logged = 0  # `done` at the last line written
        self.audio = 0.0
        self.bar = None
        self.lines = enabled and every > 0 and total > 0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="utt" if unit == "utterances" else "rec", desc="batchser")
            self.lines = False
        if self.lines:
            self.log(f"progress: 0/{total} {unit}")

    def __call__(self, n: int, secs: float = 0.0) -> None:
        self.done += n
        self.audio += secs
        el = max(time.time() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.audio / el:.1f}x real time, {self.audio / 3600 / el:.4f} audio h/s",
                                     refresh=False)
            self.bar.update(n)
        elif self.lines and time.time() - self.last >= self.every:
            self.last = time.time()
            self.logged = self.done
            self.log(self.line())

    def line(self) -> str:
        el = max(time.time() - self.t0, 1e-9)
        eta = (self.total - self.done) * el / self.done if self.done else float("nan")
        err = self.errors() if self.errors is not None else None
        return (f"progress: {self.done}/{self.total} {self.unit} ({self.done / self.total:.1%}), "
                f"{self.audio / 3600:.2f} h of audio, {self.audio / el:.1f}x real time, elapsed {_hms(el)}, "
                + (f"ETA {_hms(eta)}" if eta == eta else "ETA unknown")
                + (f", {err} errors" if err is not None else ""))

    def close(self) -> None:
        """The bar closed; off a terminal a last line, so that even a short task's log shows one."""
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.done and self.done != self.logged:
            self.lines = False
            self.log(self.line())
