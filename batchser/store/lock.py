"""One writer per output directory: an exclusive lock held for a whole run or merge.

The lock is ``flock`` on ``OUT/.batchser.lock``, a file that also names its holder (host, pid,
start time, command) for the message a refused run prints. The kernel releases a flock when
its holder dies, however it dies, so a lock left by a killed run is simply taken. flock also
works on the NFS and Lustre mounts clusters use when their locking is enabled (NFSv4, or
NFSv3 with lockd; Lustre with ``-o flock``). Where the filesystem refuses locks altogether
(ENOLCK, EOPNOTSUPP) the holder file alone decides: a holder on this host whose pid is gone is
stale and taken over; a holder on another host is trusted as alive (remove the file by hand if
you know it is not).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

LOCK_NAME = ".batchser.lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


class OutputBusy(RuntimeError):
    """Another batchser process holds the output directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_text(info: Dict) -> str:
    cmd = " ".join(info.get("command") or [])
    return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"
            + (f": {cmd}" if cmd else ""))


class OutputLock:
    """``with OutputLock(out):`` — hold ``out`` exclusively (created if missing).

    Args:
        out: the output directory (or a shard's directory) to hold.
        command: what the holder is running, for the message another process prints.
        log: where to say that a stale lock was taken over.

    Raises:
        OutputBusy: another live process holds it (the message names it).
    """

    def __init__(self, out: str | os.PathLike, *, command: Optional[List[str]] = None,
                 log: Callable[[str], None] = lambda m: None):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.command = list(command or [])
        self.log = log
        self.fd: Optional[int] = None

    def _read(self) -> Dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> "OutputLock":
        import fcntl

        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"{self.out} is in use by another batchser process ({_holder_text(self._read())}); "
                             "wait for it to finish, or use another --out") from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            flocked = False
        old = self._read()
        me = socket.gethostname()
        if old.get("pid") and old.get("pid") != os.getpid():
            same_host = old.get("host") == me
            if not flocked and (not same_host or _pid_alive(int(old["pid"]))):
                os.close(fd)
                raise OutputBusy(f"{self.out} is in use by another batchser process ({_holder_text(old)}); this "
                                 f"filesystem has no locks, so batchser trusts {self.path}: remove it if that "
                                 "process is gone")
            if not same_host or not _pid_alive(int(old["pid"])):
                self.log(f"note: took over a stale lock of {self.out} ({_holder_text(old)}: no longer running)")
        info = {"host": me, "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # no holder any more; the file stays (another may have it open)
        except OSError:
            pass
        if self.created and [p.name for p in self.out.iterdir()] == [LOCK_NAME]:
            # a run that stopped before writing anything (model unavailable, ...) leaves no OUT behind
            self.path.unlink(missing_ok=True)
            try:
                self.out.rmdir()
            except OSError:
                pass
        os.close(self.fd)  # releases the flock
        self.fd = None
