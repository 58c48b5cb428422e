"""Keysight N7776C / N7778C stand-alone tunable laser (instruments.md §1.2, §4).

LAN (VXI-11 ``TCPIP0::<ip>::inst0::INSTR``), USB-TMC or GPIB, LF terminator. The command set is the ``SOUR0``/
``TRIG0`` tree shared with the 8164B laser; it lives in :mod:`labctl.drivers.keysight_laser`, so this file only adds
what is specific to the stand-alone box: which models answer ``*IDN?``, and the connect sequence.

Connect: ``*IDN?`` (model must be N7776C or N7778C), ``*CLS``, ``:LOCK?`` (and ``:LOCK 0,<pin>`` if locked),
``:SOUR0:POW:UNIT 1``, ``:SOUR0:WAV? MIN``/``MAX``, then ``:SYST:ERR?`` must be clean. Closing the driver stops
any sweep and switches the output off first (:meth:`KeysightLaserTree.safe_state`), as the bench would.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from labctl.drivers.clock import Clock
from labctl.drivers.instrument import ScpiInstrument
from labctl.drivers.keysight_laser import DEFAULT_PIN, KeysightLaserTree
from labctl.drivers.parsing import Identity
from labctl.drivers.transport import BaseTransport, TransportSettings

log = logging.getLogger(__name__)

#: Models this driver accepts (``*IDN?`` field 2).
MODELS = ("N7776C", "N7778C")


class KeysightN777xC(KeysightLaserTree, ScpiInstrument):
    """N7776C/N7778C as a :class:`~labctl.drivers.interfaces.TunableLaser`."""

    label: ClassVar[str] = "N777xC"
    safe_on_close: ClassVar[bool] = True
    #: LF both ways; a generous timeout because ``*OPC?`` after a wavelength move waits for the laser to settle.
    line_settings: ClassVar[TransportSettings] = TransportSettings(timeout_s=10.0)

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None, pin: str = DEFAULT_PIN,
                 poll_interval_s: float | None = None,
                 output_settle_s: float | None = None) -> None:
        super().__init__(resource, resource_manager=resource_manager, name=name, timeout_s=timeout_s,
                         clock=clock)
        if poll_interval_s is not None:
            self.poll_interval_s = poll_interval_s
        if output_settle_s is not None:
            self.output_settle_s = output_settle_s
        self.identity_at_connect = self.connect_or_close(resource, lambda: self._connect(pin))

    def _connect(self, pin: str) -> Identity:
        identity = self.expect_model(MODELS)
        self.model = identity.model
        self.clear_status()
        self.prepare_laser(pin)
        self.check_errors()
        log.info("%s: %s, tuning range %.3f-%.3f nm", self.name, identity, *(x * 1e9 for x in self._limits_m or ()))
        return identity

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"power_w": self.get_power_w(), "wavelength_limits_m": list(self.wavelength_limits_m()),
                "locked": self.is_locked()}
