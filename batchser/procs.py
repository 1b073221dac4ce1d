"""Process hygiene: signals that end a run cleanly, and child processes that never outlive it.

* ``terminate_as_interrupt()``: SIGTERM (what SLURM and other schedulers send at a time limit)
  raises :class:`Interrupted` in the main thread like Ctrl-C raises KeyboardInterrupt, so the
  run flushes what it holds, writes its manifest and exits with 128 + the signal number.
* ``child_init()``: run first in every decoder and helper process. Linux's parent-death signal
  (``prctl(PR_SET_PDEATHSIG)``) delivers SIGTERM to the child when its parent dies, even by
  ``kill -9``; on SIGTERM the child kills the process groups of the pipe commands it is running
  and exits at once. Ctrl-C is left to the parent, which shuts its children down itself.
* Pipe commands (``cmd |`` in wav.scp) run in their own process group, registered here while
  they run, so a timeout, a cap or a dying decoder kills the whole pipeline, not just ``/bin/sh``.
"""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator, List, Optional, Set

_PIPE_GROUPS: Set[int] = set()
_RECEIVED: List[int] = []  # signals that stopped this process (SIGTERM through terminate_as_interrupt)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT or SIGTERM); ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def handling(sig: int, handler) -> Iterator[None]:
    """Within the block, ``handler`` handles ``sig`` (main thread only; elsewhere a no-op)."""
    try:
        old = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(sig, old)


def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Interrupted` (main thread only; else a no-op)."""
    def handler(signum, _frame):
        _RECEIVED.append(int(signum))
        raise Interrupted(signum)

    _RECEIVED.clear()  # a new command: what stopped an earlier one (in this process) is not its business
    return handling(signal.SIGTERM, handler)


def children_quiet():
    """Within the block, a child's death raises nothing. torch's DataLoader handles SIGCHLD by
    raising "worker exited unexpectedly" wherever the main thread is; after a signal killed the
    decoders, that must not cut the commit and the manifest short."""
    return handling(signal.SIGCHLD, signal.SIG_DFL)


def received_signal() -> Optional[int]:
    """The signal that stopped this run, if one did. A signal to the process group also kills the
    decoders, and their death can surface first (torch: "DataLoader worker exited unexpectedly"):
    the signal must win over the failures it causes."""
    return _RECEIVED[-1] if _RECEIVED else None


def register_pipe(pgid: int) -> None:
    _PIPE_GROUPS.add(pgid)


def kill_pipe(pgid: int) -> None:
    """SIGKILL a pipe command's whole process group (it may have exited already)."""
    _PIPE_GROUPS.discard(pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _die(_signum, _frame) -> None:
    for g in list(_PIPE_GROUPS):
        kill_pipe(g)
    os._exit(1)


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies. False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def child_init(*_args) -> None:
    """Initialiser of decoder (DataLoader worker) and helper (Pool) processes."""
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _die)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        _die(signal.SIGTERM, None)
