"""Simulated bench: the vectorized chip emulator and the simulated instruments in front of it.

``labctl.sim`` never imports calibration, procedures or the run engine.
"""

from .chip import Chip, Evaluation
from .chip_spec import ChipSpec, ChipSpecError
from .clock import VirtualClock
from .detection import MeterReading

__all__ = ["Chip", "ChipSpec", "ChipSpecError", "Evaluation", "MeterReading", "VirtualClock"]
