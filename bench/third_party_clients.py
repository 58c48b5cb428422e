"""Which operations of third-party instrument drivers work on labctl's emulated instruments.

Tries every public property (set with a valid value when it can be set, then read back) and the main methods of
PyMeasure's KeysightN7776C and Keithley2400 on an in-process emulated bench, and the vendor's ``qontrol`` library
on a Qontrol chain served on a pseudo-terminal (labctl.sim.serve); prints one line per operation: pass, or the
failure and why. An operation passes when it raises nothing and leaves the instrument's error queue empty.

    python bench/third_party_clients.py
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from labctl.sim import Chip, ChipSpec
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.instruments.keithley_model import Keithley2400Model
from labctl.sim.instruments.keysight_models import KeysightLaserModel
from labctl.sim.instruments.qontrol_model import QontrolModel
from labctl.sim.profiles import ALL
from labctl.sim.serve import BenchServer

PROFILES = {p.device: p for p in ALL}

N7776C_PROPERTIES: list[tuple[str, Any]] = [
    ("id", None), ("locked", False), ("output_enabled", True), ("output_power_mW", 1.5), ("output_power_dBm", 0.0),
    ("wavelength", 1550.0), ("trigger_out", "STF"), ("trigger_in", "SWS"), ("sweep_wl_start", 1540.0),
    ("sweep_wl_stop", 1560.0), ("sweep_step", 0.01), ("sweep_speed", 50), ("sweep_mode", "CONT"),
    ("sweep_twoway", False), ("wl_logging", True), ("sweep_state", 0), ("sweep_points", None),
]
K2400_PROPERTIES: list[tuple[str, Any]] = [
    ("id", None), ("source_mode", "voltage"), ("source_voltage", 0.5), ("source_voltage_range", 2),
    ("source_voltage_range_auto_enabled", True), ("compliance_current", 0.01), ("source_enabled", True),
    ("current", None), ("voltage", None), ("resistance", None), ("current_nplc", 1), ("current_range", 1e-3),
    ("current_range_auto_enabled", True), ("source_delay", 0.01), ("source_delay_auto_enabled", True),
    ("auto_zero_enabled", True), ("output_off_state", "normal"), ("filter_enabled", False), ("filter_count", 5),
    ("compliance_voltage", 10), ("source_current", 1e-3), ("wires", 2), ("display_enabled", True),
    ("line_frequency", 50), ("trigger_count", 1), ("trigger_delay", 0.0),
]


def report(driver: str, name: str, operation: Callable[[], Any], errors: Callable[[], list[Any]]) -> bool:
    try:
        value = operation()
        pending = errors()
    except Exception as exc:  # noqa: BLE001 - a third-party failure of any kind is the finding
        try:
            pending = errors()
        except Exception:  # noqa: BLE001
            pending = []
        print(f"  {driver:10s} {name:36s} FAIL  {type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
              + (f"  (queue: {pending})" if pending else ""))
        return False
    if pending:
        print(f"  {driver:10s} {name:36s} FAIL  error queue {pending}")
        return False
    print(f"  {driver:10s} {name:36s} pass  {value!r:.60}")
    return True


def prop(instrument: Any, name: str, value: Any) -> Callable[[], Any]:
    def run() -> Any:
        if value is not None:
            setattr(instrument, name, value)
        return getattr(instrument, name)

    return run


def pymeasure_operations() -> list[bool]:
    from pymeasure.instruments.keithley import Keithley2400
    from pymeasure.instruments.keysight import KeysightN7776C

    chip = Chip(ChipSpec(), seed=0)
    bench = EmulatedBench(chip, [
        SimulatedInstrument("laser", PROFILES["Keysight N7778C"], KeysightLaserModel("laser", 0)),
        SimulatedInstrument("smu", PROFILES["Keithley 2400"], Keithley2400Model("smu", 0)),
    ])
    results = []
    try:
        library = bench.resource_manager.visalib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            laser = KeysightN7776C(bench.address("laser"), visa_library=library, read_termination="\n",
                                   timeout=200)
            smu = Keithley2400(bench.address("smu"), visa_library=library, read_termination="\n", timeout=200)
            for name, value in N7776C_PROPERTIES:
                results.append(report("N7776C", name, prop(laser, name, value), laser.check_errors))
            results.append(report("N7776C", "valid_sweep_params()", laser.valid_sweep_params, laser.check_errors))
            for name, value in K2400_PROPERTIES:
                results.append(report("K2400", name, prop(smu, name, value), smu.check_errors))
            methods: list[tuple[str, Callable[[], Any]]] = [
                ("apply_voltage(compliance 10 mA)", lambda: smu.apply_voltage(compliance_current=0.01)),
                ("enable_source()", smu.enable_source), ("measure_current()", smu.measure_current),
                ("reset()", smu.reset), ("beep(1 kHz, 0.1 s)", lambda: smu.beep(1000, 0.1)),
                ("triad(1 kHz, 0.1 s)", lambda: smu.triad(1000, 0.1)), ("disable_source()", smu.disable_source),
                ("shutdown()", smu.shutdown)]
            for method, call in methods:
                results.append(report("K2400", method, call, smu.check_errors))
    finally:
        bench.close()
    return results


def qontrol_operations() -> list[bool]:
    import qontrol

    chip = Chip(ChipSpec(), seed=0)
    bench = EmulatedBench(chip, [SimulatedInstrument("heaters", PROFILES["Qontrol Q8iv"],
                                                     QontrolModel("heaters", np.arange(40), 5), serial=True)])
    server = BenchServer(bench)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    results = []
    try:
        q = qontrol.QXOutput(serial_port_name=server.addresses["heaters"], response_timeout=0.2)
        errors = lambda: [e for e in q.log if e.get("type") == "err"]  # noqa: E731 - the library's own error log

        def set_get(table: Any, ch: int, value: float) -> Callable[[], Any]:
            def run() -> Any:
                table[ch] = value
                return table[ch]
            return run

        def over_voltage() -> Any:
            q.v[5] = 7.0
            logged = [e["raw"] for e in q.log if e.get("type") == "err"]
            if logged[-1:] != ["E01:05"]:
                raise AssertionError(f"expected E01:05 in the library's log, got {logged}")
            q.log.clear()
            return "E01:05 reported"

        for name, operation in (("chain, n_chs", lambda: (len(q.chain), q.n_chs)),
                                ("v[5] = 2.0, read back", set_get(q.v, 5, 2.0)), ("i[5]", lambda: q.i[5]),
                                ("vmax[5] = 6.0, read back", set_get(q.vmax, 5, 6.0)), ("imax[5]", lambda: q.imax[5]),
                                ("get_all_values('V')", lambda: q.get_all_values("V")[:6]),
                                ("get_all_values('I')", lambda: q.get_all_values("I")[:6]),
                                ("set_all_values('V', 1.0)", lambda: (q.set_all_values("V", [1.0] * q.n_chs), q.v[0])),
                                ("v[5] = 7.0 above vmax", over_voltage)):
            results.append(report("qontrol", name, operation, errors))
        q.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()
        bench.close()
    return results


def main() -> None:
    print("PyMeasure 0.16 on the emulated N7778C and Keithley 2400 (in-process resource manager):")
    pymeasure = pymeasure_operations()
    print("vendor qontrol library on an emulated 5-module Q8iv chain (pseudo-terminal):")
    vendor = qontrol_operations()
    print(f"passed: PyMeasure {sum(pymeasure)}/{len(pymeasure)}, qontrol {sum(vendor)}/{len(vendor)}")


if __name__ == "__main__":
    main()
