"""Progress of a run where people look: a bar on a terminal, plain lines in a log file.

A SLURM task's stderr is a file: a tqdm bar there is either absent or a smear of carriage
returns. Off a terminal, one line every ``every`` seconds says utterances done of the total,
hours of audio, x real time, the ETA and the errors so far.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, Optional


def append_to(path: str) -> Callable[[str], None]:
    """A log function appending lines to ``path`` (the ``--log-file``)."""
    def log(m: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(m + "\n")

    return log


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
        file_log: where plain lines go while a terminal shows the bar (the ``--log-file``).

    Between batches a line also comes every ``every`` seconds while a long batch runs (one
    96-s utterance, say), saying how much audio is in hand: :meth:`working` names the batch.
    """

    def __init__(self, total: int, *, enabled: bool, every: float = 30.0, log: Callable[[str], None] = print,
                 errors: Optional[Callable[[], int]] = None, unit: str = "utterances",
                 file_log: Optional[Callable[[str], None]] = None):
        self.total, self.every, self.log, self.errors, self.unit = total, every, log, errors, unit
        self.t0 = self.last = time.time()
        self.done = 0
        self.logged = 0  # `done` at the last line written
        self.audio = 0.0
        self.bar = None
        self.busy: Optional[float] = None  # audio seconds of the batch being scored
        self.busy_since = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self.lines = enabled and every > 0 and total > 0
        if enabled and sys.stderr.isatty() and shutil.get_terminal_size((0, 0)).columns > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="utt" if unit == "utterances" else "rec", desc="batchser")
            if file_log is not None:  # the bar on the terminal, lines in the log file
                self.log = file_log
            else:
                self.lines = False
        if self.lines:
            self.log(f"progress: 0/{total} {unit}")

    def __call__(self, n: int, secs: float = 0.0) -> None:
        self.done += n
        self.audio += secs
        self.busy = None
        el = max(time.time() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.audio / el:.1f}x real time, {self.audio / 3600 / el:.4f} audio h/s",
                                     refresh=False)
            self.bar.update(n)
        if self.lines and time.time() - self.last >= self.every:
            self._write(self.line())

    def working(self, secs: float) -> None:
        """A batch of ``secs`` seconds of audio goes to the model now: while it runs, lines keep coming."""
        self.busy, self.busy_since = secs, time.time()
        if self.lines and self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="batchser-progress", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        gap = max(self.every, 1.0)  # a keep-alive, never more often than once a second
        while not self._stop.wait(min(self.every, 5.0)):
            busy, now = self.busy, time.time()
            if busy is not None and now - self.last >= gap and now - self.busy_since >= gap:
                self._write(self.line() + f"; a batch of {busy:.0f} s of audio in progress for "
                                          f"{_hms(time.time() - self.busy_since)}")

    def _write(self, line: str) -> None:
        with self._lock:
            self.last = time.time()
            self.logged = self.done
            self.log(line)

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
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)
        if self.bar is not None:
            self.bar.close()
        if self.lines and self.done and self.done != self.logged:
            self.lines = False
            self._write(self.line())
