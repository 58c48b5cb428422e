"""An exclusive, per-bench lock between processes, which names its holder when refused.

Two processes driving the same heaters would each believe they know the chip's state; the second one must be
refused with a message that says who holds the bench. The lock is an ``flock`` on a file in the lock directory
(``LABCTL_LOCK_DIR``, default ``~/.cache/labctl/locks``), released by the kernel if the holder dies.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO


class BenchBusyError(RuntimeError):
    """Another process holds the bench."""


def lock_dir() -> Path:
    env = os.environ.get("LABCTL_LOCK_DIR")
    return Path(env) if env else Path.home() / ".cache" / "labctl" / "locks"


class BenchLock:
    def __init__(self, bench_key: str, *, directory: Path | None = None) -> None:
        self.bench_key = bench_key
        digest = hashlib.sha256(bench_key.encode()).hexdigest()[:16]
        self.path = (directory or lock_dir()) / f"bench-{digest}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                info = json.loads(holder)
                who = (f"process {info['pid']} of {info['user']} on {info['host']} "
                       f"({info['command']}), since {info['since']}")
            except (ValueError, KeyError):
                who = "another process"
            raise BenchBusyError(f"bench {self.bench_key!r} is in use by {who}; lock file {self.path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(), "user": getpass.getuser(), "host": socket.gethostname(),
            "command": " ".join(sys.argv[:3]) or "python", "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> BenchLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
