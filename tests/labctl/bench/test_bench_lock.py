"""The bench lock protects instruments: one lock per instrument resource of a real bench, none for an emulated one.

Real benches here have instruments that cannot answer (GPIB addresses without a GPIB board, or a local TCP
socket the test controls), so what is shown is the lock itself: taken per resource, before connecting, released
on every path, refused with the holder named, taken over from a dead holder.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from labctl.bench.bench import Bench
from labctl.bench.config import BenchConfig, embedded_bench_path, load_bench
from labctl.bench.lock import LOCK_DIR_ENV, BenchBusyError, BenchLock, lock_dir, resource_key
from labctl.drivers.errors import InstrumentError

REPO = Path(__file__).resolve().parents[3]


def real_bench_file(path: Path, name: str, addresses: dict[str, str], board: int) -> Path:
    """The embedded default bench made real: same wiring and limits, instruments at ``addresses``, the others
    at addresses of their own on GPIB board ``board``."""
    cfg = tomllib.loads(embedded_bench_path("default").read_text())
    cfg["bench"].update(name=name, kind="real")
    del cfg["chip"]
    for i, (inst_name, inst) in enumerate(cfg["instruments"].items()):
        inst["address"] = addresses.get(inst_name, f"GPIB{board}::{i + 1}::INSTR")
    path.write_text(tomli_w.dumps(cfg))
    return path


def config_of(path: Path) -> BenchConfig:
    return load_bench(path)[0]


HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from labctl.bench.config import load_bench
    from labctl.bench.lock import BenchLock
    lock = BenchLock.for_config(load_bench(sys.argv[1])[0], bench_file=sys.argv[1], directory=Path(sys.argv[2]))
    lock.acquire()
    print("HELD", flush=True)
    sys.stdin.readline()
    lock.release()
""")


def hold_in_subprocess(bench: Path, locks: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(bench), str(locks)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "HELD", proc.stderr.read() if proc.stderr else ""
    return proc


# -- one resource, many spellings -------------------------------------------------------------------------------
@pytest.mark.parametrize("spellings", [
    ["GPIB0::20::INSTR", "gpib0::20::instr", "GPIB::20", " GPIB0::20::INSTR "],
    ["TCPIP::lab-8164b::INSTR", "TCPIP0::LAB-8164B::inst0::INSTR", "tcpip0::lab-8164b::hislip0::instr",
     "TCPIP0::lab-8164b::5025::SOCKET"],
    ["USB0::0x1313::0x8078::P0012345::INSTR", "usb::4883::32888::p0012345::instr"],
    ["COM3", "com3", "\\\\.\\COM3"],
    ["socket://moxa-1:4001", "SOCKET://MOXA-1:4001?logging=debug"],
])
def test_spellings_of_one_instrument_are_one_resource(spellings: list[str]) -> None:
    assert len({resource_key(s) for s in spellings}) == 1, [resource_key(s) for s in spellings]


@pytest.mark.parametrize("a, b", [
    ("GPIB0::20::INSTR", "GPIB0::21::INSTR"),
    ("GPIB0::20::INSTR", "GPIB1::20::INSTR"),
    ("GPIB0::20::INSTR", "GPIB0::20::3::INSTR"),
    ("TCPIP0::gw::gpib0,20::INSTR", "TCPIP0::gw::gpib0,21::INSTR"),
    ("socket://moxa-1:4001", "socket://moxa-1:4002"),
])
def test_different_instruments_are_different_resources(a: str, b: str) -> None:
    assert resource_key(a) != resource_key(b)


def test_a_serial_port_is_the_device_behind_its_symlinks(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    device.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Qontrol_Q8iv-if00-port0").symlink_to(device)
    keys = {resource_key(str(device)), resource_key(str(by_id / "usb-Qontrol_Q8iv-if00-port0")),
            resource_key(f"ASRL{device}::INSTR"), resource_key(f"spy://{device}?file=log.txt")}
    assert keys == {str(device.resolve())}


# -- two bench files, one instrument -----------------------------------------------------------------------------
def test_two_bench_files_naming_one_instrument_cannot_run_at_once(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lab_a = real_bench_file(tmp_path / "lab-a.toml", "lab-a", {"heaters": "GPIB0::20::INSTR"}, 1)
    lab_b = real_bench_file(tmp_path / "lab-b.toml", "lab-b", {"heaters": "gpib0::20::instr"}, 2)
    lab_c = real_bench_file(tmp_path / "lab-c.toml", "lab-c", {"heaters": "GPIB0::21::INSTR"}, 3)
    holder = hold_in_subprocess(lab_a, locks)
    try:
        with pytest.raises(BenchBusyError) as info:
            with Bench.open(lab_b, lock_dir=locks):
                pass
        message = str(info.value)
        # which instrument, and who holds it: process, user, host, bench file, since when
        assert "instrument 'heaters' (gpib0::20::instr) of bench 'lab-b'" in message
        assert f"process {holder.pid} of {getpass.getuser()} on {socket.gethostname()}" in message
        assert f"bench 'lab-a' ({lab_a.resolve()})" in message and "since 20" in message
        assert "\n" not in message
        # the refused bench holds nothing afterwards: everything of lab-b except the shared heaters is free
        with BenchLock({"laser0": config_of(lab_b).instruments["laser0"].address or ""}, directory=locks):
            pass
        # a bench that shares no instrument is not refused: it gets as far as connecting (nothing answers)
        with pytest.raises(InstrumentError):
            with Bench.open(lab_c, lock_dir=locks):
                pass
    finally:
        holder.kill()        # no clean release: the kernel drops the lock with the process
        holder.wait(timeout=30)
    # the dead holder's lock is taken over, and the file now names the new holder
    lock = BenchLock.for_config(config_of(lab_b), bench_file=lab_b, directory=locks)
    with lock:
        shared = [p for p in lock.paths if p.name.startswith("GPIB0_20-")]
        assert len(shared) == 1
        record = json.loads(shared[0].read_text())
        assert record["pid"] == os.getpid() and record["bench"] == "lab-b" and record["instruments"] == ["heaters"]
    assert shared[0].read_text() == ""          # released: the holder line is cleared, the file stays


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    with BenchLock({"meter": "GPIB0::22::INSTR"}, bench="a", directory=tmp_path):
        with pytest.raises(BenchBusyError, match=f"process {os.getpid()} "):
            BenchLock({"pm": "gpib::22"}, bench="b", directory=tmp_path).acquire()


def test_instruments_of_one_bench_sharing_a_resource_take_it_once(tmp_path: Path) -> None:
    lock = BenchLock({"laser": "GPIB0::5::INSTR", "meter": "gpib0::5::instr", "dac": "GPIB0::6::INSTR"},
                     directory=tmp_path)
    with lock:
        assert len(lock.paths) == 2
        record = json.loads(next(p for p in lock.paths if p.name.startswith("GPIB0_5-")).read_text())
        assert record["instruments"] == ["laser", "meter"]


def test_all_or_nothing(tmp_path: Path) -> None:
    with BenchLock({"x": "GPIB0::9::INSTR"}, directory=tmp_path):
        greedy = BenchLock({"a": "GPIB0::1::INSTR", "x": "GPIB0::9::INSTR", "z": "GPIB0::30::INSTR"},
                           directory=tmp_path)
        with pytest.raises(BenchBusyError):
            greedy.acquire()
        assert not greedy.held
        with BenchLock({"a": "GPIB0::1::INSTR", "z": "GPIB0::30::INSTR"}, directory=tmp_path):
            pass


# -- a real bench locks per resource, before connecting ------------------------------------------------------------
def test_a_real_bench_holds_every_resource_while_it_connects(tmp_path: Path) -> None:
    """The heater driver is a local socket the test answers; while the bench talks to it, its resources are
    checked from outside; then the socket closes, the connection fails and every resource is free again."""
    locks = tmp_path / "locks"
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    path = real_bench_file(tmp_path / "lab-s.toml", "lab-s", {"heaters": f"socket://127.0.0.1:{port}",
                                                              "meter": "GPIB0::22::INSTR"}, 4)
    other = real_bench_file(tmp_path / "lab-t.toml", "lab-t", {"heaters": f"SOCKET://127.0.0.1:{port}?logging=info",
                                                               "meter": "GPIB0::23::INSTR"}, 5)
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = server.accept()
        seen["first_line"] = conn.recv(1024)
        seen["lock_files"] = sorted(p.name for p in locks.iterdir())
        try:            # another bench file on the same heater driver, while this one is connecting
            BenchLock.for_config(config_of(other), directory=locks).acquire()
        except BenchBusyError as exc:
            seen["refused"] = str(exc)
        try:            # the meter alone (another spelling), too
            BenchLock({"pm": "gpib::22"}, directory=locks).acquire()
        except BenchBusyError as exc:
            seen["meter_refused"] = str(exc)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(InstrumentError, match="heaters"):
            Bench.connect(config_of(path), "digest", lock_dir=locks, bench_file=path)
    finally:
        thread.join(timeout=30)
        server.close()
    assert seen["first_line"]                                   # the driver had started talking
    assert len(seen["lock_files"]) == len(config_of(path).instruments)  # one per resource, all before connecting
    assert f"process {os.getpid()}" in seen["refused"] and "bench 'lab-s'" in seen["refused"]
    assert "instrument 'heaters'" in seen["refused"] and str(path.resolve()) in seen["refused"]
    assert "instrument 'meter' there" in seen["meter_refused"]
    # the failed connection released everything
    for bench in (other, path):
        with BenchLock.for_config(config_of(bench), directory=locks):
            pass


# -- emulated benches ------------------------------------------------------------------------------------------------
EMULATED = textwrap.dedent("""
    import sys
    from labctl.bench.bench import Bench
    with Bench.open(None) as bench:
        bench.readout.read()
        print("OPEN", flush=True)
        sys.stdin.readline()
""")


def test_emulated_benches_in_two_processes_run_at_once(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    env = dict(os.environ, **{LOCK_DIR_ENV: str(locks)})
    other = subprocess.Popen([sys.executable, "-c", EMULATED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "OPEN", other.stderr.read() if other.stderr else ""
        with Bench.open(None, lock_dir=locks) as bench:        # the same emulated bench, at the same time
            bench.readout.read()
            assert not bench.lock.held
            with Bench.open(None, lock_dir=locks):             # and a second one in this process
                pass
    finally:
        out, err = other.communicate("\n", timeout=60)
    assert other.returncode == 0, err[-2000:]
    assert not locks.exists()       # no machine-wide lock was taken by either process


def test_lock_folder_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "shared"))
    assert lock_dir() == tmp_path / "shared"
    with BenchLock({"x": "GPIB0::1::INSTR"}):
        pass
    assert (tmp_path / "shared").stat().st_mode & 0o1777 == 0o1777     # every user's runs lock here
    assert (tmp_path / "shared" / next(iter(os.listdir(tmp_path / "shared")))).stat().st_mode & 0o666 == 0o666
    monkeypatch.delenv(LOCK_DIR_ENV)
    default = lock_dir()
    assert default in (Path("/run/lock/labctl"), Path(__import__("tempfile").gettempdir()) / "labctl-locks")


def test_sigkilled_holder_is_taken_over(tmp_path: Path) -> None:
    bench = real_bench_file(tmp_path / "lab-k.toml", "lab-k", {}, 6)
    holder = hold_in_subprocess(bench, tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with BenchLock.for_config(config_of(bench), directory=tmp_path) as lock:
        assert lock.held
