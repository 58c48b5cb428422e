"""Several laser outputs switched on together, with one stabilisation wait for all of them.

Why: a laser's output needs a pause after it is switched on before it is read (about 1 s on the Keysight N777xC,
as LabExT waits). Separate lasers stabilise in parallel, so switching ten on one after another with a pause each
cost ten pauses where one does: 9 s of every refinement reading on the emulated default bench, where the lasers
are restored after each one-laser-at-a-time reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


def switch_on_together(lasers: Iterable[Any], wait: Callable[[float], None]) -> None:
    """Switch every laser of ``lasers`` on, then ``wait(seconds)`` once for the slowest to stabilise.

    A laser with ``start_output()`` (returns its stabilisation time) is switched on without its own pause; one
    without it is switched on with ``set_output(True)``, which waits what it needs itself.
    """
    settle_s = 0.0
    for laser in lasers:
        start = getattr(laser, "start_output", None)
        if start is None:
            laser.set_output(True)
        else:
            settle_s = max(settle_s, float(start()))
    if settle_s > 0:
        log.debug("lasers on: %.3g s stabilisation", settle_s)
        wait(settle_s)
