"""``labctl sim serve`` driven by clients that know nothing of labctl: PyMeasure's KeysightN7776C and Keithley2400,
the vendor's ``qontrol`` library over a pseudo-terminal, plain pyvisa-py; each reading agrees with what labctl's own
driver reads from the same served chip.

Every server is a subprocess bounded in time: it must print its addresses within STARTUP_S, and it is terminated
(then killed if it does not stop within STOP_S) whatever the test does.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

STARTUP_S = 60.0
STOP_S = 10.0


class Served:
    """A ``labctl sim serve --json`` subprocess: its first output, then terminated and awaited."""

    def __init__(self, bench: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--json", "--bench", bench],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
                if not sel.select(STARTUP_S):
                    raise TimeoutError(f"labctl sim serve printed nothing within {STARTUP_S:g} s")
            self.info: dict[str, Any] = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        except BaseException:
            self.stop()
            raise
        self.addresses: dict[str, str] = self.info["addresses"]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def default_bench() -> Iterator[Served]:
    served = Served("default")
    try:
        yield served
    finally:
        assert served.stop() == 0, "the server did not shut down cleanly on SIGTERM"


@pytest.fixture(scope="module")
def current_bench() -> Iterator[Served]:
    served = Served("current")
    try:
        yield served
    finally:
        assert served.stop() == 0, "the server did not shut down cleanly on SIGTERM"


@pytest.fixture(scope="module")
def visa() -> Any:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    yield rm
    rm.close()


def test_first_output_maps_every_instrument_to_an_address(default_bench: Served) -> None:
    info = default_bench.info
    assert info["bench"] == "emulated-default" and info["seed"] == 0
    assert set(info["addresses"]) == set(info["drivers"]) == {"heaters", "meter", *(f"laser{k}" for k in range(10))}
    assert info["addresses"]["heaters"].startswith("/dev/pts/")
    ports = {a.split("::")[2] for n, a in info["addresses"].items() if n != "heaters"}
    assert all(a.startswith("TCPIP0::127.0.0.1::") and a.endswith("::SOCKET") for n, a in info["addresses"].items()
               if n != "heaters") and len(ports) == 11


def test_plain_pyvisa_with_the_default_write_terminator(default_bench: Served, visa: Any) -> None:
    meter = visa.open_resource(default_bench.addresses["meter"])
    try:
        assert meter.write_termination == "\r\n"          # pyvisa's default; the instrument takes CR LF
        meter.read_termination = "\n"                      # a raw socket has no END: replies end at LF
        assert meter.query("*IDN?") == "Keysight Technologies,N7745A,MY55100045,V1.250"
        meter.write(":SENS1:POW:UNIT W;:SENS2:POW:UNIT W")
        assert meter.query(":SENS1:POW:UNIT?;:SENS2:POW:UNIT?") == "1;1"
        block = np.array(meter.query_binary_values(":FETC:POW:ALL?", datatype="f"))
        assert block.shape == (8,) and np.all((block > 0) & (block < 0.1))
        meter.write(":LABCTL:NOT:A:COMMAND")
        assert meter.query(":SYST:ERR?").startswith("-113,")
        assert meter.query(":SYST:ERR?") == '+0,"No error"'
    finally:
        meter.close()


def test_pymeasure_n7776c_sets_and_reads_back_as_labctl_reads_it(default_bench: Served, visa: Any) -> None:
    from pymeasure.instruments.keysight import KeysightN7776C

    from labctl.drivers.keysight_n777xc import KeysightN777xC

    address = default_bench.addresses["laser3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # PyMeasure: "not known whether this device supports SCPI"
        laser = KeysightN7776C(address, visa_library="@py", read_termination="\n")
    try:
        laser.wavelength = 1553.25
        laser.output_power_mW = 2.5
        laser.output_enabled = True
        assert laser.wavelength == pytest.approx(1553.25, abs=1e-9)
        assert laser.output_power_mW == pytest.approx(2.5)
        assert laser.output_enabled is True
        assert laser.check_errors() == []
        ours = KeysightN777xC(address, resource_manager=visa, name="laser3", timeout_s=2.0)
        try:
            assert ours.get_wavelength_m() == pytest.approx(1553.25e-9, rel=1e-12)
            assert ours.get_power_w() == pytest.approx(2.5e-3)
            assert ours.get_output() is True
            laser.output_power_mW = 1.0          # PyMeasure moves it again: labctl sees the move
            assert ours.get_power_w() == pytest.approx(1.0e-3)
        finally:
            ours.transport.close()               # not ours.close(): that would switch the laser off (safe state)
        laser.output_enabled = False
        assert laser.output_enabled is False
    finally:
        laser.adapter.close()


def test_meter_read_by_pyvisa_agrees_with_labctl(default_bench: Served, visa: Any) -> None:
    from labctl.drivers.keysight_n774xa import KeysightN774xA

    address = default_bench.addresses["meter"]
    ours = KeysightN774xA(address, resource_manager=visa, name="meter", timeout_s=2.0)
    plain = visa.open_resource(address, read_termination="\n")
    try:
        labctl_w = ours.read_all_w()
        plain_w = np.array(plain.query_ascii_values(":FETC:POW:ALL:CSV?"))
        # two readings of the same static chip: they differ by the meter's noise and laser RIN only (~1e-4 relative
        # at 0.1 ms averaging), far below the 1 % asserted here, and the ports carry the same light
        assert np.allclose(plain_w, labctl_w, rtol=1e-2)
        assert np.all(labctl_w > 1e-6)
    finally:
        plain.close()
        ours.transport.close()


def test_vendor_qontrol_library_over_a_pseudo_terminal(default_bench: Served) -> None:
    import qontrol

    from labctl.drivers.qontrol import Qontrol

    port = default_bench.addresses["heaters"]
    q = qontrol.QXOutput(serial_port_name=port, response_timeout=0.5)
    try:
        assert q.n_chs == 40 and [m["device_type"] for m in q.chain] == ["Q8iv"] * 5
        q.v[3] = 1.5
        q.v[12] = 2.25
        assert q.v[3] == pytest.approx(1.5, abs=1e-4) and q.v[12] == pytest.approx(2.25, abs=1e-4)
        vendor_ma = np.array([q.i[3], q.i[12]])
        assert np.all(vendor_ma > 0.5)                     # ~1 kOhm heaters: about 1.5 and 2.2 mA
    finally:
        q.close()
    ours = Qontrol(port, name="heaters", max_voltage_v=7.0, quiet_s=0.05, timeout_s=0.5)
    try:
        volts = ours.read_drive()
        assert volts[3] == pytest.approx(1.5, abs=1e-4) and volts[12] == pytest.approx(2.25, abs=1e-4)
        power_w = ours.read_power_w()
        assert power_w is not None
        assert power_w[[3, 12]] == pytest.approx(volts[[3, 12]] * vendor_ma * 1e-3, rel=1e-3)
    finally:
        ours.safe_state()
        ours.transport.close()


def test_pymeasure_keithley_follows_a_ring_moved_by_a_heater(current_bench: Served, visa: Any) -> None:
    from pymeasure.instruments.keithley import Keithley2400 as PyMeasureKeithley

    from labctl.drivers.greymatter import Greymatter
    from labctl.drivers.keithley_2400 import Keithley2400

    bank, ring = 1, 4
    address = current_bench.addresses[f"smu{bank}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # apply_voltage is deprecated in PyMeasure 0.16
        smu = PyMeasureKeithley(address, visa_library="@py", read_termination="\n")
        smu.apply_voltage(compliance_current=0.01)
    heaters = Greymatter(current_bench.addresses["heaters"], name="heaters", max_current_a=0.0058, timeout_s=0.5)
    ours = None
    try:
        smu.enable_source()
        assert smu.source_enabled is True and smu.compliance_current == pytest.approx(0.01)
        cold = smu.current
        ours = Keithley2400(address, resource_manager=visa, name=f"smu{bank}", timeout_s=2.0)
        cold_ours = ours.measure_current_a()           # labctl's driver sets its own reading format at connect
        drive = np.zeros(heaters.n_channels)
        drive[bank * 10 + ring] = 4e-3                 # the current bench wires ring (b, r) to channel 10 b + r
        heaters.set_drive(drive)
        hot_ours = ours.measure_current_a()
        smu.reset_data_format()                        # PyMeasure's own format back (one instrument, two clients)
        hot = smu.current
        # the moved ring changes the bank's balanced photocurrent far beyond the readout noise ...
        assert abs(hot - cold) > 2e-2 * abs(cold)
        # ... and both drivers read the same chip: equal within noise (repeated readings of these milliamp currents
        # spread by less than 0.05 %; 0.5 % is asserted)
        assert hot == pytest.approx(hot_ours, rel=5e-3) and cold == pytest.approx(cold_ours, rel=5e-3)
    finally:
        heaters.safe_state()
        heaters.transport.close()
        if ours is not None:
            ours.transport.close()
        smu.disable_source()
        smu.adapter.close()


def test_a_real_bench_is_not_served(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    import labctl.bench
    from labctl.cli.main import main

    real = Path(labctl.bench.__file__).parent / "examples" / "qontrol_n7778c_n7745a.toml"
    with pytest.raises(SystemExit) as info:
        main(["sim", "serve", "--bench", str(real)])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "only emulated benches can be served" in message
