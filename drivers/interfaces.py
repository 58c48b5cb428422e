"""Capability interfaces: what calibration, the run engine and the DFA controller may ask of instruments.

Upper layers depend on these protocols only, never on a model: any laser driver is a :class:`TunableLaser`,
any heater DAC a :class:`HeaterDriver`, and so on. The bench's safety wrapper implements the same protocols,
which is how limits are enforced without the upper layers noticing. Units are SI throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from labctl.drivers.parsing import Identity

if TYPE_CHECKING:
    from labctl.drivers.clock import Clock
    from labctl.drivers.limits import HeaterLimits

DriveMode = Literal["voltage", "current"]


@runtime_checkable
class Identified(Protocol):
    """Every instrument can say what it is, report its errors, and close."""

    name: str
    address: str

    def identity(self) -> Identity: ...

    def check_errors(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SweepSettings:
    """A continuous laser sweep with wavelength logging."""

    start_m: float
    stop_m: float
    step_m: float
    speed_m_per_s: float

    @property
    def n_points(self) -> int:
        return int(round((self.stop_m - self.start_m) / self.step_m)) + 1


@runtime_checkable
class TunableLaser(Identified, Protocol):
    """One laser output (one WDM channel on a bench)."""

    def set_wavelength_m(self, wavelength_m: float) -> None: ...

    def get_wavelength_m(self) -> float: ...

    def set_power_w(self, power_w: float) -> None: ...

    def get_power_w(self) -> float: ...

    def set_output(self, enabled: bool) -> None: ...

    def get_output(self) -> bool: ...

    def wavelength_limits_m(self) -> tuple[float, float]: ...

    def configure_sweep(self, sweep: SweepSettings) -> int:
        """Arm a continuous sweep with logging; returns the number of trigger/log points."""
        ...

    def start_sweep(self) -> None: ...

    def wait_sweep(self, timeout_s: float) -> None: ...

    def logged_wavelengths_m(self) -> np.ndarray: ...

    def safe_state(self) -> None:
        """Output off; called on every exit path."""
        ...


@runtime_checkable
class HeaterDriver(Identified, Protocol):
    """A multi-channel voltage or current source driving ring heaters."""

    n_channels: int
    mode: DriveMode

    def set_drive(self, values: np.ndarray, channels: np.ndarray | None = None) -> None:
        """Write volts (voltage mode) or amps (current mode) to ``channels`` (all when None) in one go."""
        ...

    def read_drive(self) -> np.ndarray:
        """Read back the drive actually applied on every channel (V or A)."""
        ...

    def read_power_w(self) -> np.ndarray | None:
        """Electrical power per channel where the instrument measures it, else None."""
        ...

    def max_drive(self) -> np.ndarray:
        """Per-channel hardware limit of the drive (V or A) as set on the instrument."""
        ...

    def safe_state(self) -> None:
        """All outputs to zero; called on every exit path."""
        ...


@runtime_checkable
class PowerReadout(Identified, Protocol):
    """Multi-port optical power or photocurrent readout."""

    n_ports: int

    def set_wavelength_m(self, wavelength_m: float, port: int | None = None) -> None: ...

    def set_averaging_time_s(self, averaging_time_s: float, port: int | None = None) -> None: ...

    def set_range_dbm(self, range_dbm: float | None, port: int | None = None) -> None:
        """A fixed range in dBm, or None for auto range."""
        ...

    def read_power_w(self, port: int) -> float: ...

    def read_all_w(self) -> np.ndarray:
        """Every port in one transaction where the instrument can, ordered by port."""
        ...

    def configure_logging(self, n_points: int, averaging_time_s: float, triggered: bool = True) -> None: ...

    def start_logging(self) -> None: ...

    def wait_logging(self, timeout_s: float) -> None: ...

    def logged_power_w(self, port: int) -> np.ndarray: ...


@runtime_checkable
class SourceMeter(Identified, Protocol):
    """A voltage source measuring current (biases and reads an on-chip photodiode)."""

    def set_voltage_v(self, voltage_v: float) -> None: ...

    def set_compliance_a(self, current_a: float) -> None: ...

    def set_output(self, enabled: bool) -> None: ...

    def get_output(self) -> bool: ...

    def set_integration_time_s(self, time_s: float) -> None: ...

    def measure_current_a(self) -> float: ...

    def list_sweep_current_a(self, voltages_v: np.ndarray) -> np.ndarray:
        """Source each voltage in turn and return the measured currents, in one bulk exchange."""
        ...

    def safe_state(self) -> None:
        """Source to 0 V and output off."""
        ...


@runtime_checkable
class ScanningVoltmeter(Identified, Protocol):
    """A multiplexed DC voltmeter (a DAQ reading transimpedance-amplifier outputs): one scan reads every channel."""

    def configure_scan(self, channels: Sequence[int]) -> None:
        """Measure DC volts on ``channels`` (instrument channel numbers); they become the scan list."""
        ...

    def set_integration_time_s(self, time_s: float) -> float:
        """Integrate each channel for at least ``time_s``; returns the integration time actually set."""
        ...

    def read_scan_v(self) -> np.ndarray:
        """One scan: volts per channel, in the order given to :meth:`configure_scan`."""
        ...


@dataclass(frozen=True)
class BankReading:
    """One reading of every bank's output.

    ``balanced`` is drop minus through in the readout's own unit (W for power meters on the two ports, A for a
    balanced photodiode read by a source meter); ``through``/``drop`` are present when the ports are read apart.
    """

    balanced: np.ndarray
    unit: str
    through: np.ndarray | None = None
    drop: np.ndarray | None = None


@runtime_checkable
class BankReadout(Protocol):
    """Reads the output of every weight bank at once: what calibration and the DFA controller measure."""

    n_banks: int
    unit: str

    def configure(self, wavelength_m: float, averaging_time_s: float) -> None:
        """Calibration wavelength (power meters) and averaging/integration time for every bank."""
        ...

    def read(self) -> BankReading: ...


class BenchSession(Protocol):
    """One open bench as calibration and training see it (made by the bench: ``labctl.bench.session.Session``).

    Capabilities are the bench's safety-wrapped instruments; ``limits`` are its heater limits in ring order (row-major
    bank, ring); ``clock`` is the clock the transports wait on (virtual on an emulated bench). Calibration and the
    DFA engine reach hardware only through this object.
    """

    heaters: HeaterDriver
    ring_channels: np.ndarray
    n_banks: int
    n_rings: int
    limits: HeaterLimits
    lasers: list[TunableLaser]
    wavelengths_m: np.ndarray
    laser_max_power_w: float
    readout: BankReadout
    clock: Clock
    settle_time_s: float
    power_meter: PowerReadout | None
    sweep_ports: list[tuple[int, int]] | None
    identities: dict[str, str]
    bench_sha256: str
    wiring_sha256: str
    chip_id: str
    vectorized: Any

    @property
    def mode(self) -> DriveMode: ...

    @property
    def max_drive(self) -> np.ndarray: ...

    @property
    def max_power_w(self) -> np.ndarray: ...

    @property
    def total_power_w(self) -> float: ...

    @property
    def n_channels(self) -> int: ...

    def transaction_count(self) -> int: ...

    def wait(self, seconds: float) -> None: ...

    def elapsed_s(self) -> float: ...

    def set_ring_drive(self, values: np.ndarray) -> None: ...

    def set_laser_powers(self, powers_w: np.ndarray) -> bool: ...

    def note_laser_powers(self, powers_w: np.ndarray) -> None: ...

    def forget_lasers(self) -> None: ...

    def read_configurations(self, drives: np.ndarray, powers: np.ndarray, schedule: Any,
                            power_index: np.ndarray | None = None, current: int | None = None) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
