"""Exclusive use of a real bench's instruments between processes; a refusal names the holder.

What is protected is the instrument, not the bench file's name: two processes driving the same heater driver
would each believe they know the chip's state, whatever their bench files are called. A real bench therefore
locks every instrument *resource* it names before it connects to any of them, and a second process (another
bench file that names one of the same instruments, another user) is refused with a line that says which
instrument is held, by which process, user and host, from which bench file and command, and since when.

Resources are compared after normalisation (:func:`resource_key`): VISA resource names are case-insensitive and
have optional parts (``GPIB0::20::INSTR``, ``gpib0::20::instr`` and ``GPIB::20`` are one instrument; so are
``TCPIP::host::INSTR``, ``TCPIP0::HOST::hislip0::INSTR`` and ``TCPIP0::host::5025::SOCKET``, the same box over
VXI-11, HiSLIP and a raw socket); serial ports are resolved through symlinks (``/dev/serial/by-id/...`` and
``/dev/ttyUSB0``; ``ASRL/dev/ttyUSB0::INSTR`` is the same port) and a serial line behind a device server
(``socket://host:4001``) is one resource per host and port. A host name and its IP address are NOT recognised as
one instrument (no name lookups here).

An emulated bench takes no lock at all: its chip and simulated instruments live inside its process, so dry runs,
checkouts and parallel studies never block each other.

The lock folder holds one file per resource (``<resource>-<hash>.lock``, JSON naming the holder while held,
empty otherwise). It is ``$LABCTL_LOCK_DIR`` when set, else ``/run/lock/labctl`` (the machine's folder for
device locks, on tmpfs, emptied at boot) when ``/run/lock`` is writable, else ``<tmp>/labctl-locks``. A folder
labctl creates is made world-writable with the sticky bit and its lock files readable and writable by all, so
every user of the machine takes and sees the same locks. Point ``LABCTL_LOCK_DIR`` at one shared folder if
several machines can reach the same LAN instruments (the lock then relies on the file system's ``flock``).

The lock is an ``flock`` on the open file: the kernel drops it when the holding process ends, however it ends,
so a lock left by a dead process is simply taken over by the next one (and its holder line overwritten). Lock
files are never deleted, so two processes can never hold locks on two different files of one resource. POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.bench.config import BenchConfig

log = logging.getLogger(__name__)

#: Environment variable naming the lock folder.
LOCK_DIR_ENV = "LABCTL_LOCK_DIR"
#: Attempts to lock a file that is being replaced (deleted and re-created by someone) under our feet.
_OPEN_ATTEMPTS = 5


class BenchBusyError(RuntimeError):
    """Another process holds an instrument of the bench."""


def lock_dir() -> Path:
    """The lock folder: ``$LABCTL_LOCK_DIR``, else ``/run/lock/labctl`` when writable, else ``<tmp>/labctl-locks``."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env).expanduser()
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK | os.X_OK):
        return run_lock / "labctl"
    return Path(tempfile.gettempdir()) / "labctl-locks"


# -- which instrument an address reaches ---------------------------------------------------------------------------
def resource_key(address: str) -> str:
    """The instrument resource ``address`` reaches, spelled one way (see the module docstring)."""
    text = address.strip()
    if "::" in text:            # a VISA resource name (the rule of labctl.drivers.transport.is_visa_address)
        return _visa_key(text)
    return _serial_key(text)


_LAN_OWN_INTERFACE = re.compile(r"^(INST|HISLIP)\d+$")


def _visa_key(text: str) -> str:
    if text[:4].upper() == "ASRL":
        board = text[4:].split("::", 1)[0]
        if not board.isdigit():   # ASRL/dev/ttyUSB0::INSTR or ASRLCOM3::INSTR: the serial port itself
            return _serial_key(board)
        # ASRL<n> is numbered by the VISA library (COM<n> on Windows NI-VISA, not confirmed elsewhere): kept apart
        return f"ASRL{int(board)}"
    upper = text.upper()        # VISA resource names are case-insensitive (VPP-4.3)
    from pyvisa import rname

    try:
        parsed = rname.parse_resource_name(upper)
    except rname.InvalidResourceName:
        return upper
    if isinstance(parsed, rname.GPIBInstr):
        secondary = f"::{int(parsed.secondary_address)}" if parsed.secondary_address else ""
        return f"GPIB{int(parsed.board or 0)}::{int(parsed.primary_address)}{secondary}"
    if isinstance(parsed, rname.TCPIPSocket):
        return f"TCPIP::{parsed.host_address}"      # the box itself, whichever protocol reaches it
    if isinstance(parsed, rname.TCPIPInstr):
        device = parsed.lan_device_name.upper()
        if _LAN_OWN_INTERFACE.match(device):
            return f"TCPIP::{parsed.host_address}"
        return f"TCPIP::{parsed.host_address}::{device}"   # a LAN/GPIB gateway: the device behind it
    if isinstance(parsed, rname.USBInstr):
        interface = int(parsed.usb_interface_number or 0)
        return (f"USB::{int(parsed.manufacturer_id, 0):#06x}::{int(parsed.model_code, 0):#06x}::"
                f"{parsed.serial_number}" + (f"::{interface}" if interface else ""))
    return str(parsed)


def _serial_key(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        rest = rest.split("?", 1)[0]
        if scheme in ("spy", "alt"):      # pyserial wrappers around another port
            return _serial_key(rest)
        if scheme in ("socket", "rfc2217"):     # a serial line behind a device server: one per host and port
            return f"SOCKET::{rest.strip('/').upper()}"
        return f"{scheme}://{rest}"
    if text.startswith("\\\\.\\"):
        text = text[4:]
    if re.fullmatch(r"(?i)com\d+", text):
        return text.upper()
    return os.path.realpath(text)


def _file_name(key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.,-]+", "_", key).strip("_")[:60] or "resource"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.lock"


# -- one resource ---------------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(text: str) -> str:
    """One line about the holder recorded in a lock file."""
    try:
        info = json.loads(text)
        bench_file = f" ({info['bench_file']})" if info.get("bench_file") else ""
        who = (f"process {info['pid']} of {info['user']} on {info['host']}: bench {info['bench']!r}{bench_file}, "
               f"instrument {', '.join(map(repr, info['instruments']))} there, command {info['command']!r}, "
               f"since {info['since']}")
    except (ValueError, KeyError, TypeError):
        return "another process (it has not written its name yet)"
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]):
        who += " (that process has ended; a process it started still holds the lock)"
    return who


class _ResourceLock:
    """An ``flock`` on one resource's lock file."""

    def __init__(self, key: str, directory: Path) -> None:
        self.key = key
        self.path = directory / _file_name(key)
        self._fd: int | None = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        while True:
            # an existing file is opened without O_CREAT: fs.protected_regular refuses O_CREAT on another
            # user's file in a sticky folder
            try:
                return os.open(self.path, flags)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)        # every user may take over the lock after us (umask undone)
            return fd

    def try_acquire(self, holder: bytes) -> str | None:
        """Take the lock and record ``holder``; when another process holds it, return its holder text instead."""
        for _ in range(_OPEN_ATTEMPTS):
            try:
                fd = self._open()
            except OSError as exc:
                raise OSError(exc.errno, f"cannot open the lock file {self.path}: {exc.strerror} (the lock "
                                         f"folder is set by {LOCK_DIR_ENV})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 65536, 0).decode(errors="replace").strip()
                os.close(fd)
                return text
            mine = os.fstat(fd)
            try:
                now = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)        # the file was replaced between open and lock: lock the one in place
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder, 0)
            self._fd = fd
            return None
        raise OSError(errno.EAGAIN, f"lock file {self.path} keeps being replaced; is something deleting lock files?")

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _ensure_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the lock folder {directory}: {exc.strerror} (set "
                                 f"{LOCK_DIR_ENV} to a folder every user of the bench can write)") from None
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o1777)         # every user's runs create their lock files here


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _command_line() -> str:
    argv = list(getattr(sys, "orig_argv", None) or sys.argv) or ["python"]
    return " ".join([Path(argv[0]).name, *argv[1:]])[:300]


# -- a bench's resources --------------------------------------------------------------------------------------------
class BenchLock:
    """Exclusive use of every instrument resource of one bench, taken all together or not at all.

    ``instruments`` maps instrument names to addresses (VISA resource names, serial ports); instruments of the
    bench that share a resource take it once. An empty mapping (an emulated bench) takes nothing.
    """

    def __init__(self, instruments: Mapping[str, str], *, bench: str = "", bench_file: str | Path | None = None,
                 directory: Path | None = None) -> None:
        self.bench = bench
        self.bench_file = None if bench_file is None else str(Path(bench_file).resolve())
        self.directory = directory
        #: resource key -> (instrument names, addresses as written) of this bench
        self.resources: dict[str, tuple[list[str], list[str]]] = {}
        for name, address in instruments.items():
            names, addresses = self.resources.setdefault(resource_key(address), ([], []))
            names.append(name)
            addresses.append(address)
        self._held: list[_ResourceLock] = []

    @classmethod
    def for_config(cls, config: BenchConfig, *, bench_file: str | Path | None = None,
                   directory: Path | None = None) -> BenchLock:
        """The lock of a bench: every instrument address of a real bench, nothing for an emulated one."""
        instruments = {} if config.bench.kind == "emulated" else {
            name: inst.address for name, inst in config.instruments.items() if inst.address is not None}
        return cls(instruments, bench=config.bench.name, bench_file=bench_file, directory=directory)

    @property
    def held(self) -> bool:
        return bool(self._held)

    @property
    def paths(self) -> list[Path]:
        """Lock files of the resources held."""
        return [lock.path for lock in self._held]

    def _holder(self, key: str) -> bytes:
        names, addresses = self.resources[key]
        return json.dumps({
            "pid": os.getpid(), "user": _user(), "host": socket.gethostname(), "bench": self.bench,
            "bench_file": self.bench_file, "instruments": names, "resource": key, "addresses": addresses,
            "command": _command_line(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }).encode()

    def acquire(self) -> None:
        """Lock every resource (sorted order), or none: raises :class:`BenchBusyError` naming the holder."""
        if self._held or not self.resources:
            return
        directory = self.directory or lock_dir()
        _ensure_folder(directory)
        try:
            for key in sorted(self.resources):
                lock = _ResourceLock(key, directory)
                holder = lock.try_acquire(self._holder(key))
                if holder is not None:
                    names, addresses = self.resources[key]
                    raise BenchBusyError(
                        f"instrument {names[0]!r} ({addresses[0]}) of bench {self.bench!r} is in use by "
                        f"{describe_holder(holder)}; lock file {lock.path}")
                self._held.append(lock)
                log.debug("locked %s (%s)", key, lock.path)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        while self._held:
            lock = self._held.pop()
            try:
                lock.release()
            except OSError as exc:       # the kernel drops the lock with the file anyway
                log.error("releasing %s failed: %s", lock.path, exc)

    def __enter__(self) -> BenchLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

