"""Build the emulated chip and its simulated instruments from an emulated bench file.

The bench file's wiring says which heater channel drives which ring, which laser is which WDM channel and which
detector reads which bank; here that wiring becomes the constructor arguments of the simulated instruments'
physics models. The drivers then open the simulated instruments exactly as they would open real ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.bench.config import BenchConfig, BenchConfigError
from labctl.bench.readout import AdcBanks, PowerMeterBanks, SourceMeterBanks
from labctl.drivers.errors import ComplianceError, InstrumentReplyError
from labctl.sim.chip import Chip
from labctl.sim.chip_spec import ChipSpec
from labctl.sim.clock import VirtualClock
from labctl.sim.emulated_bench import EmulatedBench, SimulatedInstrument
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.faults import fault_problems as fault_problems
from labctl.sim.instruments import MODELS
from labctl.sim.instruments.daq_model import daq_reading_v
from labctl.sim.instruments.keysight_models import AUTO_RANGE_MARGIN_DB
from labctl.sim.profiles import ALL as PROFILES

log = logging.getLogger(__name__)

QONTROL_CHANNELS_PER_MODULE = 8


@dataclass
class Emulation:
    """The emulated side of a bench: the chip (ground truth for reports only) and its simulated instruments."""

    chip: Chip
    bench: EmulatedBench
    options: dict[str, dict[str, Any]]

    @property
    def resource_manager(self) -> Any:
        return self.bench.resource_manager

    @property
    def clock(self) -> VirtualClock:
        """The bench's clock: transports, the session and the engines all wait on it."""
        return self.chip.clock

    @property
    def truth(self) -> EmulatorTruth:
        """The emulator's ground truth, for reports and tests only (never for calibration or training)."""
        return EmulatorTruth(self.chip)

    def vectorized(self, config: BenchConfig, readout: Any) -> EmulatedReadings:
        """The session's vectorized batch for this bench's readout (see :class:`EmulatedReadings`)."""
        if isinstance(readout, PowerMeterBanks | SourceMeterBanks | AdcBanks):
            return EmulatedReadings(self.chip, config.wiring.heaters.mode, readout)
        raise BenchConfigError(config.bench.name, [("wiring.detectors", f"no vectorized model of readout "
                                                                         f"{type(readout).__name__}")])

    def timing(self) -> dict[str, float]:
        """The instrument timing table the emulated instruments charge (``ChipSpec.timing``), for projections."""
        return dataclasses.asdict(self.chip.spec.timing)

    def address(self, name: str) -> str:
        return self.bench.address(name)

    def driver_options(self, name: str) -> dict[str, Any]:
        """Extra driver arguments on the emulated bench (short wall-clock waits; virtual time is charged)."""
        return dict(self.options.get(name, {}))

    def close(self) -> None:
        self.bench.close()
        self.chip.close()


class EmulatorTruth:
    """Ground truth of the emulated chip, in the terms the procedures report in: for reports and tests only.

    Calibration and training never see it; a procedure may print it beside what the instruments measured, labelled
    as the emulator's truth.
    """

    def __init__(self, chip: Chip) -> None:
        self._chip = chip

    @property
    def reference(self) -> float:
        """|weight| of the 'every ring far away' reference (bus loss only)."""
        params = self._chip.truth_params()
        return float(params.bus_loss_amplitude ** (2 * self._chip.n_rings))

    def weights_at(self, drive: np.ndarray, mode: str, channel_of_ring: np.ndarray) -> np.ndarray:
        """TRUE weights (B, R) of every ring at its channel for one ring-order drive."""
        w = self._chip.truth_weights(np.asarray(drive, dtype=float)[None, :], mode=mode)[0] / self.reference
        return np.take_along_axis(w, np.asarray(channel_of_ring, dtype=int), axis=1)

    def resonances_m(self, drive: np.ndarray, mode: str) -> np.ndarray:
        """TRUE resonance wavelengths (B, R) at one ring-order drive."""
        return self._chip.truth_resonances_m(np.asarray(drive, dtype=float)[None, :], mode)[0]


class EmulatedReadings:
    """The emulated bench's vectorized equivalent of the instrument loop (``Session.read_configurations``).

    Same physics as the simulated instruments: every configuration's settled response at every encoding, with laser
    RIN and the readout's noise and quantization drawn per reading: ``Chip.meter_readings_configs`` (the N774x meter
    model in auto range, fused in one compiled pass) for off-chip power meters, ``Chip.evaluate_configs`` (balanced
    detector, then the source meter's compliance) for on-chip photodiodes read by source meters, and the same
    balanced currents through the TIAs into the DAQ model for photodiodes read by an ADC. Heater settling transients
    are not modelled (every reading is settled, as the instrument loop's settle wait makes it). It charges no time:
    the caller charges the batch's projected bench time to the session clock.
    """

    def __init__(self, chip: Chip, mode: str, readout: PowerMeterBanks | SourceMeterBanks | AdcBanks) -> None:
        self._chip = chip
        self._mode = mode
        self._readout = readout

    def read(self, drives: np.ndarray, powers: np.ndarray, averaging_time_s: float,
             power_index: np.ndarray | None = None) -> np.ndarray:
        chip, readout = self._chip, self._readout
        if isinstance(readout, PowerMeterBanks):
            return chip.meter_readings_configs(drives, powers, averaging_time_s, AUTO_RANGE_MARGIN_DB,
                                               mode=self._mode, power_index=power_index)
        if power_index is not None:
            powers = powers[power_index]
        if isinstance(readout, AdcBanks):
            return self._adc_readings(readout, drives, powers, averaging_time_s)
        ev = chip.evaluate_configs(drives, powers, averaging_time_s, mode=self._mode)
        current = ev.balanced_current_a
        limit = float(readout.compliance_a)
        at_limit = np.abs(current) >= limit
        if at_limit.any():   # as the source meter: a reading at compliance is an error, not the limit's value
            t, n, b = (int(v) for v in np.argwhere(at_limit)[0])
            meter = readout.meters[b]
            raise ComplianceError(f"source at compliance for bank {b} (configuration {t}, encoding {n}: "
                                  f"{float(current[t, n, b]):g} A at the {limit:g} A compliance)",
                                  instrument=meter.name, address=meter.address)
        return current

    def _adc_readings(self, readout: AdcBanks, drives: np.ndarray, powers: np.ndarray,
                      averaging_time_s: float) -> np.ndarray:
        """What ``AdcBanks.read`` returns: balanced currents through the TIAs, read by the DAQ at the integration
        time it sets for ``averaging_time_s`` (the driver's own rounding, no I/O), converted back to amps."""
        t_bank, range_v, line_hz = readout.integration_plan(averaging_time_s)
        ev = self._chip.evaluate_configs(drives, powers, float(t_bank.max()), mode=self._mode)
        volts = ev.balanced_current_a * readout.gain_v_per_a + readout.offset_v
        normals = self._chip.instrument_normals(volts.shape)
        reading, overload = daq_reading_v(volts, range_v, t_bank * line_hz, normals)
        if overload.any():
            bank = int(np.argwhere(overload)[0][-1])
            adc, channel = readout.adcs[readout.wiring[bank][0]], readout.wiring[bank][1]
            raise InstrumentReplyError(f"channel {channel} overload: beyond the {range_v[bank]:g} V range (TIA output "
                                       "too large?)", instrument=adc.name, address=adc.address)
        return (reading - readout.offset_v) / readout.gain_v_per_a

    def state_dict(self) -> dict[str, Any]:
        return self._chip.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._chip.load_state_dict(state)


def serve(config: BenchConfig, *, host: str = "127.0.0.1", base_port: int = 0, follow_wall_clock: bool = False,
          exchange_log: Any = None) -> tuple[Any, Emulation]:
    """The emulated side of ``config`` served to other processes (``labctl sim serve``): a
    :class:`labctl.sim.serve.BenchServer` (VISA instruments on loopback sockets, serial ones on pseudo-terminals)
    over a freshly built emulation. The caller runs ``server.serve_forever()``, then closes both."""
    from labctl.sim.serve import BenchServer

    emulation = build_emulation(config)
    emulation.bench.exchange_log = exchange_log
    try:
        server = BenchServer(emulation.bench, host=host, base_port=base_port, follow_wall_clock=follow_wall_clock)
    except BaseException:
        emulation.close()
        raise
    return server, emulation


def check_chip_spec(overrides: dict[str, Any]) -> None:
    """Raise ValueError naming the key when an emulated bench's ``[chip.spec]`` overrides are not chip parameters."""
    ChipSpec.from_dict(overrides)


def chip_spec(config: BenchConfig) -> ChipSpec:
    assert config.chip is not None
    return ChipSpec().with_overrides(config.chip.spec)


def build_emulation(config: BenchConfig) -> Emulation:
    assert config.chip is not None, "emulated benches have a [chip] table (validated)"
    spec = chip_spec(config)
    w = config.wiring
    problems = []                  # checked on the spec, before a chip of any size is built
    if (spec.layout.n_banks, spec.layout.n_rings) != (w.banks, w.rings):
        problems.append(("wiring.banks", f"wiring has {w.banks} x {w.rings} rings, the emulated chip "
                                         f"(chip.spec.layout n_banks x n_rings) {spec.layout.n_banks} x "
                                         f"{spec.layout.n_rings}"))
    if len(w.lasers) != spec.lasers.n_channels:
        problems.append(("wiring.lasers", f"{len(w.lasers)} lasers for {spec.lasers.n_channels} WDM channels "
                                          "(chip.spec.lasers n_channels)"))
    if problems:
        raise BenchConfigError(config.bench.name, problems)
    try:
        chip = Chip(spec, seed=config.chip.seed)
    except (ValueError, OverflowError, MemoryError) as exc:   # the parameters together make no chip
        given = ", ".join(f"{section}.{name}" for section, table in config.chip.spec.items()
                          for name in (table if isinstance(table, dict) else {})) or "none"
        raise BenchConfigError(config.bench.name, [("chip.spec", f"{exc} (this file sets: {given})")]) from None
    profiles = {p.device: p for p in PROFILES}
    simulated: list[SimulatedInstrument] = []
    options: dict[str, dict[str, Any]] = {}
    for name, inst in config.instruments.items():
        entry = MODELS.get(inst.driver)
        if entry is None:
            chip.close()
            raise BenchConfigError(config.bench.name, [(f"instruments.{name}.driver",
                                                        f"{inst.driver!r} has no simulation for emulated benches")])
        device = entry.device
        try:
            model_kwargs, opts = _role(name, inst.driver, config)
            model = entry.model(name, **model_kwargs)
        except (ValueError, TypeError) as exc:          # the wiring asks for what the instrument does not have
            chip.close()
            key = "wiring.heaters.channels" if name == w.heaters.instrument else f"instruments.{name}"
            raise BenchConfigError(config.bench.name, [(key, str(exc))]) from None
        simulated.append(SimulatedInstrument(name, profiles[device], model, serial=entry.serial))
        options[name] = opts
    faults = FaultPlan.of([Fault(**entry) for entry in config.faults])   # validated with the bench file
    return Emulation(chip=chip, bench=EmulatedBench(chip, simulated, faults=faults), options=options)


def _role(name: str, driver: str, config: BenchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model arguments and driver options of instrument ``name`` from the wiring."""
    w = config.wiring
    if name == w.heaters.instrument:
        wired = np.asarray(w.heaters.channels, dtype=int)
        if driver == "qontrol":
            n_modules = math.ceil((wired.max() + 1) / QONTROL_CHANNELS_PER_MODULE)
            n_out = n_modules * QONTROL_CHANNELS_PER_MODULE
            extra: dict[str, Any] = {"n_modules": n_modules}
        else:
            n_out = int(wired.max()) + 1
            extra = {}
        heater_map = np.full(n_out, -1, dtype=int)
        heater_map[wired] = np.arange(wired.size)  # chip heater index = ring index, row-major (bank, ring)
        return {"heater_map": heater_map, **extra}, {}
    if name in w.lasers:
        return {"channel": w.lasers.index(name)}, {"poll_interval_s": 0.0, "output_settle_s": 1.0}
    detectors = [(b, d) for b, d in enumerate(w.detectors) if d.instrument == name]
    if detectors:
        if detectors[0][1].through_port is not None:
            n_ports = 1 + max(max(int(d.through_port), int(d.drop_port)) for _, d in detectors)  # type: ignore
            port_map: list[tuple[int, int] | None] = [None] * max(n_ports, 8)
            for b, d in detectors:
                port_map[int(d.through_port)] = (b, 0)  # type: ignore[arg-type]
                port_map[int(d.drop_port)] = (b, 1)  # type: ignore[arg-type]
            return {"port_map": port_map}, {"poll_interval_s": 0.0}
        if detectors[0][1].channel is not None:
            return _daq_role(name, config, detectors)
        if len(detectors) != 1:
            raise BenchConfigError(config.bench.name, [("wiring.detectors", f"{name} reads more than one bank")])
        return {"bank": detectors[0][0]}, {}
    return {}, {}


def _daq_role(name: str, config: BenchConfig, detectors: list[tuple[int, Any]]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DAQ model reads bank b's balanced current through the TIA the bench file gives for its channel; the
    emulated mainframe holds a 20-channel multiplexer (40 if a higher channel is wired) in every slot used."""
    from labctl.sim.instruments.daq_model import TiaChannel

    tias = {int(d.channel): TiaChannel(bank=b, gain_v_per_a=float(d.tia_gain_v_per_a), offset_v=float(d.tia_offset_v))
            for b, d in detectors}
    installed: list[int] = []
    for slot in sorted({ch // 100 for ch in tias}):
        size = 20 if max(ch % 100 for ch in tias if ch // 100 == slot) <= 20 else 40
        installed.extend(slot * 100 + k for k in range(1, size + 1))
    options = config.instruments[name].options
    kwargs: dict[str, Any] = {"channels": tias, "installed": installed}
    if "line_frequency_hz" in options:
        kwargs["line_frequency_hz"] = float(options["line_frequency_hz"])
    return kwargs, {}
