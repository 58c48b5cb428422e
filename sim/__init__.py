"""Simulated bench: the vectorized chip emulator and the simulated instruments in front of it.

``labctl.sim`` never imports calibration, procedures or the run engine.
"""

from labctl.sim.chip import Chip, Evaluation
from labctl.sim.chip_spec import ChipSpec, ChipSpecError
from labctl.sim.clock import VirtualClock
from labctl.sim.detection import MeterReading

__all__ = ["Chip", "ChipSpec", "ChipSpecError", "Evaluation", "MeterReading", "VirtualClock"]
