"""The bench on its emulated instruments: limits checked at the transport, faults end in the safe state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.bench.bench import Bench, lasers_on
from labctl.bench.config import embedded_bench_path, load_bench
from labctl.drivers import qontrol
from labctl.drivers.errors import (InstrumentConnectionError, InstrumentError, InstrumentReplyError,
                                   InstrumentReportedError, LimitError)
from labctl.sim.templates import match

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


@pytest.fixture(scope="module")
def default_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    config, digest = load_bench()
    bench = Bench.connect(config, digest, lock_dir=tmp_path_factory.mktemp("locks"))
    try:
        with bench.guard:
            yield bench
    finally:
        bench.close()


class TransportAudit:
    """Records every line that reaches the heater and laser transports (the last point before the instrument)."""

    def __init__(self, bench: Bench) -> None:
        self.lines: list[tuple[str, str]] = []
        self._patched: list[tuple[object, object]] = []
        targets = {"heaters": bench.heaters.inner.transport}
        targets.update({laser.name: laser.inner.transport for laser in bench.lasers})
        for name, transport in targets.items():
            original = transport._send

            def send(command: str, _orig=original, _name=name) -> None:
                self.lines.append((_name, command))
                _orig(command)

            transport._send = send  # type: ignore[method-assign]
            self._patched.append((transport, original))

    def restore(self) -> None:
        for transport, original in self._patched:
            transport._send = original  # type: ignore[method-assign]

    def heater_values(self) -> list[dict[int, float]]:
        """Every heater write as {channel: volts}, parsed with the driver's own templates."""
        writes: list[dict[int, float]] = []
        for name, line in self.lines:
            if name != "heaters":
                continue
            vec = match(qontrol.VVEC_SET, line)
            if vec is not None:
                values = [float(v) for v in vec["values"].split(",")]
                writes.append({int(vec["start"]) + i: v for i, v in enumerate(values)})
                continue
            one = match(qontrol.QontrolChannel.voltage_v.command, line)
            if one is not None:
                writes.append({int(one["ch"]): float(one["value"])})
        return writes

    def laser_powers_w(self) -> list[float]:
        from labctl.drivers.keysight_laser import KeysightLaserTree

        template = KeysightLaserTree.power_mw.command  # power goes out in mW with its unit
        return [float(m["value"]) * 1e-3 for name, line in self.lines if name != "heaters"
                for m in [match(template, line)] if m is not None]


drives = st.lists(st.one_of(st.floats(min_value=-2.0, max_value=12.0),
                            st.sampled_from([float("nan"), float("inf"), -float("inf"), 7.0, 6.33])),
                  min_size=40, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=drives, subset=st.lists(st.integers(0, 39), min_size=1, max_size=40, unique=True),
       powers=st.lists(st.floats(min_value=-1e-3, max_value=0.05), min_size=1, max_size=3))
def test_property_no_out_of_limit_command_reaches_a_transport(default_bench: Bench, values, subset,
                                                              powers) -> None:
    bench = default_bench
    limits = bench.config.limits
    audit = TransportAudit(bench)
    try:
        for attempt in (lambda: bench.set_ring_drive(np.array(values)),
                        lambda: bench.heaters.set_drive(np.array(values)[: len(subset)], np.array(subset)),
                        *(lambda p=p: bench.lasers[0].set_power_w(p) for p in powers)):
            try:
                attempt()
            except LimitError:
                pass  # refused before any I/O
            except InstrumentReportedError:
                pass  # within the bench limits but outside the instrument's own range: the instrument said no
    finally:
        audit.restore()
    state = np.zeros(bench.heaters.n_channels)
    wired = set(bench.ring_channels.tolist())
    for write in audit.heater_values():
        for ch, volts in write.items():
            assert np.isfinite(volts) and 0 <= volts <= limits.heater_max_voltage_v + 1e-9
            assert volts == 0 or ch in wired
            assert volts**2 / limits.heater_min_resistance_ohm <= limits.heater_max_power_w + 1e-9
            state[ch] = volts
        assert (state**2).sum() / limits.heater_min_resistance_ohm <= limits.total_heater_power_w + 1e-9
    for power in audit.laser_powers_w():
        assert 0 <= power <= limits.laser_max_power_w
    bench.heaters.safe_state()


def test_a_heater_write_reaches_the_chip_and_the_readout_sees_it(default_bench: Bench) -> None:
    bench = default_bench
    chip = bench.emulation.chip
    lasers_on(bench, 1e-3)
    bench.readout.configure(1550e-9, 1e-3)
    bench.set_ring_drive(np.zeros(40))
    bench.settle()
    before = bench.readout.read()
    drive = np.zeros(40)
    drive[0] = 2.0  # ring 0 of bank 0: about 1 nm red shift
    bench.set_ring_drive(drive)
    bench.settle()
    after = bench.readout.read()
    assert np.isclose(chip.heater_drive()[0], 2.0, atol=1e-3)
    shift = chip.truth_resonances_m(chip.heater_drive()[None, :])[0] - chip.truth_resonances_m(
        np.zeros((1, 40)))[0]
    assert shift[0, 0] > 0.5e-9 and abs(shift[1, 0]) < 0.02 * shift[0, 0]
    # what the meter read is what the chip emits at that moment (meter noise and linearity only)
    expected = chip.read_port_power_w(1e-3)
    assert np.allclose(after.through, expected[:, 0], rtol=0.01, atol=1e-9)
    assert np.allclose(after.drop, expected[:, 1], rtol=0.01, atol=1e-9)
    assert abs(after.balanced[0] - before.balanced[0]) > 1e-8  # far above the meter noise (~1 pW)
    bench.heaters.safe_state()
    for laser in bench.lasers:
        laser.safe_state()


def test_projected_time_advances(default_bench: Bench) -> None:
    t0 = default_bench.projected_time_s()
    default_bench.readout.read()
    assert default_bench.projected_time_s() > t0


# --- faults -------------------------------------------------------------------------------------------------


def _heated_bench(lock_dir: Path, name: str = "default") -> Bench:
    config, digest = load_bench(embedded_bench_path(name))
    bench = Bench.connect(config, digest, lock_dir=lock_dir)
    lasers_on(bench, 1e-3)
    bench.set_ring_drive(np.full(40, 2.0) if name == "default" else np.full(40, 0.002))
    return bench


def _assert_safe(bench: Bench, except_heaters: bool = False) -> None:
    chip = bench.emulation.chip
    if not except_heaters:
        assert np.all(chip.heater_drive() == 0), chip.heater_drive()
    assert not chip.laser_on().any()


@pytest.mark.parametrize("fault", ["timeout", "garbage", "error_queue"])
def test_faults_end_safe_with_a_clear_error(lock_dir: Path, fault: str) -> None:
    bench = _heated_bench(lock_dir)
    meter_model = bench.emulation.bench.model("meter")
    if fault == "timeout":
        bench.emulation.bench.disconnect("meter")
        bench.readout.meters[0].transport.settings = type(bench.readout.meters[0].transport.settings)(
            timeout_s=0.05, retries=0)
        bench.readout.meters[0].transport._res.timeout = 50
        expected: type[Exception] = InstrumentError
    elif fault == "garbage":
        answer = meter_model.exchange
        meter_model.exchange = (  # type: ignore[method-assign]
            lambda message: "garbage,reply" if "POW:ALL" in message else answer(message))
        expected = InstrumentReplyError
    else:
        bench.lasers[3].inner.transport.write(":LABCTL:NOT:A:COMMAND")
        expected = InstrumentReportedError
    with pytest.raises(expected) as info:
        with bench.guard:
            try:
                if fault == "error_queue":
                    bench.lasers[3].check_errors()
                else:
                    bench.readout.read()
            finally:
                pass
    message = str(info.value)
    assert ("meter" in message) if fault != "error_queue" else ("laser3" in message)
    _assert_safe(bench)
    bench.close()


def test_dropped_heater_connection_still_turns_lasers_off(lock_dir: Path) -> None:
    bench = _heated_bench(lock_dir)
    bench.emulation.bench.disconnect("heaters")
    with pytest.raises(InstrumentConnectionError, match="heaters"):
        with bench.guard:
            bench.set_ring_drive(np.full(40, 1.0))
    assert [name for name, _ in bench.guard.failures] == ["heaters to zero"]
    _assert_safe(bench, except_heaters=True)
    bench.close()


SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    from labctl.bench.bench import Bench, lasers_on
    from labctl.bench.config import embedded_bench_path
    state = {}
    bench_ref = {}
    try:
        with Bench.open(embedded_bench_path(sys.argv[1])) as bench:
            bench_ref["b"] = bench
            lasers_on(bench, 1e-3)
            bench.set_ring_drive(np.full(40, float(sys.argv[3])))
            print("READY", flush=True)
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))
            for _ in range(1000):
                bench.readout.read()
    except (KeyboardInterrupt, SystemExit) as exc:
        chip = bench_ref["b"].emulation.chip
        state = {"exit": type(exc).__name__, "heaters": chip.heater_drive().tolist(),
                 "lasers_on": chip.laser_on().tolist()}
    print(json.dumps(state))
""")


@pytest.mark.parametrize("bench_name, drive", [("default", 2.0), ("current", 0.002), ("adc", 2.0)])
@pytest.mark.parametrize("signame, exit_name", [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "SystemExit")])
def test_ctrl_c_and_sigterm_mid_run_leave_the_bench_safe(lock_dir: Path, signame: str, exit_name: str,
                                                          bench_name: str, drive: float) -> None:
    env = dict(os.environ, LABCTL_LOCK_DIR=str(lock_dir))
    result = subprocess.run([sys.executable, "-c", SCRIPT, bench_name, signame, str(drive)], capture_output=True,
                            text=True, timeout=120, env=env, cwd=REPO)
    assert "READY" in result.stdout, result.stderr[-2000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["exit"] == exit_name
    assert all(v == 0 for v in state["heaters"]) and not any(state["lasers_on"])


def test_invalid_bench_file_connects_nothing(tmp_path: Path, lock_dir: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(embedded_bench_path("default").read_text().replace('driver = "qontrol"', 'driver = "nope"'))
    with pytest.raises(ValueError, match="instruments.heaters.driver"):
        with Bench.open(bad, lock_dir=lock_dir):
            pass
    assert not lock_dir.exists()  # validation failed before the lock: nothing was opened


def test_bench_check_cli(lock_dir: Path) -> None:
    env = dict(os.environ, LABCTL_LOCK_DIR=str(lock_dir))
    result = subprocess.run([sys.executable, "-m", "labctl.cli", "bench", "check", "--json"], capture_output=True,
                            text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bench"] == "emulated-default" and not report["safe_state_failures"]
    assert report["instruments"]["heaters"]["identity"].startswith("Qontrol")
    bad = subprocess.run([sys.executable, "-m", "labctl.cli", "bench", "check", "--bench", "nosuchbench"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert bad.returncode == 2 and "--bench" in bad.stderr


NO_WITH_SCRIPT = textwrap.dedent("""
    import atexit, json, os, signal, sys
    import numpy as np
    from labctl.bench.bench import Bench, lasers_on
    from labctl.bench.config import embedded_bench_path, load_bench
    ref = {}

    def report():
        chip = ref["bench"].emulation.chip
        print(json.dumps({"heaters": chip.heater_drive().tolist(), "lasers_on": chip.laser_on().tolist()}))

    atexit.register(report)      # registered before the bench's own: runs after its safe state
    config, digest = load_bench(embedded_bench_path(sys.argv[1]))
    bench = ref["bench"] = Bench.connect(config, digest)     # no ``with``, and never closed
    lasers_on(bench, 1e-3)
    bench.set_ring_drive(np.full(40, float(sys.argv[3])))
    assert ref["bench"].emulation.chip.laser_on().all() and (ref["bench"].emulation.chip.heater_drive() > 0).all()
    print("READY", flush=True)
    if sys.argv[2] == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            bench.readout.read()
    elif sys.argv[2] == "raise":
        raise RuntimeError("the script fails")
    # "exit": the script just ends
""")


@pytest.mark.parametrize("bench_name, drive", [("default", 2.0), ("current", 0.002)])
@pytest.mark.parametrize("ending, returncode", [("sigterm", 128 + 15), ("exit", 0), ("raise", 1)])
def test_connect_without_with_leaves_the_bench_safe(lock_dir: Path, bench_name: str, drive: float, ending: str,
                                                     returncode: int) -> None:
    env = dict(os.environ, LABCTL_LOCK_DIR=str(lock_dir))
    result = subprocess.run([sys.executable, "-c", NO_WITH_SCRIPT, bench_name, ending, str(drive)],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert "READY" in result.stdout, result.stderr[-2000:]
    assert result.returncode == returncode, result.stderr[-2000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(v == 0 for v in state["heaters"]) and not any(state["lasers_on"])


def test_connect_arms_the_guard_and_close_disarms_it(lock_dir: Path) -> None:
    import signal

    from labctl.bench import safety

    before = signal.getsignal(signal.SIGTERM)     # the guard's own when another bench of this module is open
    config, digest = load_bench()
    first = Bench.connect(config, digest)
    second = Bench.connect(config, digest)          # two benches in one process share the one handler
    try:
        assert first.guard.armed and second.guard.armed
        assert signal.getsignal(signal.SIGTERM) is safety._on_sigterm
        with first.guard:                           # a ``with`` inside keeps the connection's arming
            pass
        assert first.guard.armed
        first.close()
        assert not first.guard.armed and signal.getsignal(signal.SIGTERM) is safety._on_sigterm
    finally:
        first.close()
        second.close()
    assert not second.guard.armed
    assert signal.getsignal(signal.SIGTERM) is before


def test_readback_after_writes(lock_dir: Path, tmp_path: Path) -> None:
    text = embedded_bench_path("default").read_text().replace(
        "laser_max_power_w = 0.010", "laser_max_power_w = 0.010\nheater_readback_tolerance = 0.001")
    path = tmp_path / "readback.toml"
    path.write_text(text)
    with Bench.open(path, lock_dir=lock_dir) as bench:
        bench.set_ring_drive(np.full(40, 1.5))  # read back through VALL? and compared
        model = bench.emulation.bench.model("heaters")
        original = model.handle

        def stuck(line: str):  # the instrument reports a different voltage than commanded
            reply = original(line)
            if line == qontrol.VALL_QUERY and isinstance(reply, str):
                return reply.replace("+1.5000 V", "+1.4000 V", 1)
            return reply

        model.handle = stuck
        with pytest.raises(InstrumentError, match="read-back of channel 0"):
            bench.set_ring_drive(np.full(40, 1.5))


def test_detector_compliance_comes_from_the_bench_limits(tmp_path: Path, lock_dir: Path) -> None:
    """limits.detector_max_current_a becomes every source meter's compliance at connect (read back) and the bank
    readout's; without it the driver default holds."""
    text = embedded_bench_path("current").read_text().replace("detector_max_current_a = 0.010",
                                                              "detector_max_current_a = 0.004")
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with Bench.open(path) as bench:
        smus = [bench.instruments[d.instrument] for d in bench.config.wiring.detectors]
        assert all(smu.compliance_a == pytest.approx(0.004) for smu in smus)
        assert bench.readout.compliance_a == pytest.approx(0.004)
