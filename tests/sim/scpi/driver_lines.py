"""Every command line labctl's SCPI drivers send, collected three ways for the referee test:

* recorded traffic: whatever passes through the transports (``BaseTransport._send`` and the VISA block query)
  while a real bench session runs on an embedded emulated bench, or while a driver connects to its pyvisa-sim
  unit and reads its settings;
* declarations: every :class:`~labctl.drivers.instrument.Setting` rendered as its query and as its command with
  a valid value (the way :mod:`labctl.sim.protocol` reads them), on the driver and on its channels;
* the drivers' module-level command templates (``LOGGING_PARAMETERS``, ``SWEEP_PMAX_QUERY`` ...), rendered with
  sample values.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labctl.bench.config import DRIVERS
from labctl.drivers.errors import InstrumentError, LimitError
from labctl.drivers.instrument import Setting
from labctl.drivers.transport import BaseTransport, VisaTransport
from labctl.drivers.validators import Boolean, IntRange, OneOf, Range
from labctl.sim.protocol import SimProfile, yaml_path

Line = tuple[str, str]  # (bench driver name, command line)
#: Marks a line rendered with a validator bound: the driver's envelope may be wider than the instrument family's
#: range, so such a line may draw an execution error (-222) but never a command error.
BOUND = "bound"

DRIVER_OF_CLASS = {path.split(":")[1]: name for name, path in DRIVERS.items()}


@contextlib.contextmanager
def recorded() -> Iterator[list[tuple[str, str]]]:
    """(transport name, line) for every line any transport sends while the block runs."""
    lines: list[tuple[str, str]] = []
    send, block = BaseTransport._send, VisaTransport._query_block

    def recording_send(self: BaseTransport, command: str) -> None:
        lines.append((self.name, command))
        send(self, command)

    def recording_block(self: VisaTransport, command: str, expect_termination: bool = True) -> bytes:
        lines.append((self.name, command))
        return block(self, command, expect_termination)

    BaseTransport._send = recording_send  # type: ignore[method-assign]
    VisaTransport._query_block = recording_block  # type: ignore[method-assign]
    try:
        yield lines
    finally:
        BaseTransport._send = send  # type: ignore[method-assign]
        VisaTransport._query_block = block  # type: ignore[method-assign]


def _sample(setting: Setting[Any]) -> list[tuple[Any, bool]]:
    """Values to render a setting's command with: its default and every choice, then the validator's bounds."""
    out: list[tuple[Any, bool]] = []
    if setting.mapping is not None:
        return [(key, False) for key in setting.mapping]
    validator = setting.validator
    if setting.default is not None:
        out.append((setting.default, False))
    if isinstance(validator, (Range, IntRange)):
        out += [(validator.lo, True), (validator.hi, True)]
    elif isinstance(validator, OneOf):
        out += [(v, False) for v in validator.values]
    elif isinstance(validator, Boolean):
        out += [(True, False), (False, False)]
    return out


def declared_lines(instance: Any) -> list[tuple[str, bool]]:
    """(line, rendered with a validator bound) for every Setting of ``instance`` (an instrument or a channel)."""
    lines: list[tuple[str, bool]] = []
    for setting in type(instance).settings_declared():
        if setting.query is not None:
            lines.append((instance._fill(setting.query), False))
        if setting.command is None:
            continue
        rendered = 0
        for value, bound in _sample(setting):
            try:
                lines.append((setting.format_command(instance, value), bound))
                rendered += 1
            except LimitError:
                continue
        assert rendered, f"{type(instance).__name__}.{setting.name}: no valid sample value to render"
    return lines


#: Sample values for the named fields of the drivers' module-level templates.
TEMPLATE_FIELDS: dict[str, Any] = {
    "state": 0, "pin": "1234", "start_nm": 1540.0, "stop_nm": 1560.0, "points": 1001,
    "averaging_time_s": 1e-4, "slot": 1, "count": 100, "values": "1.000000E-01,2.000000E-01",
    "elements": "CURR,STAT", "line": 1,
}
#: Driver module -> (tree, channel ids that fill ``{ch}``) pairs it serves.
TEMPLATE_MODULES: dict[str, list[tuple[str, list[str]]]] = {
    "labctl.drivers.keysight_laser": [("keysight_n777xc", []), ("keysight_8164b", [])],
    "labctl.drivers.keysight_sweep": [("keysight_n774xa", ["1", "8"]), ("keysight_8164b", ["1:CHAN1", "4:CHAN2"])],
    "labctl.drivers.keysight_n774xa": [("keysight_n774xa", [])],
    "labctl.drivers.keysight_8164b": [("keysight_8164b", [])],
    "labctl.drivers.santec_tsl570": [("santec_tsl570", [])],
    "labctl.drivers.thorlabs_pm100": [("thorlabs_pm100", [])],
    "labctl.drivers.keithley_2400": [("keithley_2400", [])],
}


def _is_command_template(name: str, value: Any) -> bool:
    if not (isinstance(value, str) and name.isupper()) or not value or value.startswith("{"):
        return False
    head = value.split(" ", 1)[0]
    return value[0] in ":*" or (":" in head and head.replace(":", "").replace("?", "").isalpha())


def template_lines() -> list[Line]:
    lines: list[Line] = []
    for module_name, targets in TEMPLATE_MODULES.items():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if not _is_command_template(name, value):
                continue
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f]
            for tree, channels in targets:
                for ch in (channels if "ch" in fields else [""]):
                    lines.append((tree, value.format(ch=ch, **TEMPLATE_FIELDS)))
    return lines


def profile_session(profile: SimProfile, tmp_path: Path) -> tuple[list[Line], list[Line]]:
    """Connect the driver to its pyvisa-sim unit, read every readable setting, render every declaration.

    Returns the lines that must parse cleanly and, apart, those rendered with a validator bound."""
    import pyvisa

    tree = DRIVER_OF_CLASS[profile.driver.__name__]
    copy = tmp_path / yaml_path(profile).name
    shutil.copy(yaml_path(profile), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    rendered: list[tuple[str, bool]] = []
    with recorded() as sent:
        driver = profile.driver(profile.resources[0], resource_manager=rm, timeout_s=0.2, **profile.open_kwargs)
        instances = [driver] + list(getattr(driver, "sensors", []))
        power_meter = getattr(driver, "power_meter", None)
        instances += list(getattr(power_meter, "sensors", []))
        if getattr(driver, "laser", None) is not None:
            instances.append(driver.laser)
        for instance in instances:
            rendered += declared_lines(instance)
            for setting in type(instance).settings_declared():
                if setting.query is not None:
                    with contextlib.suppress(InstrumentError, ValueError):
                        getattr(instance, setting.name)
        driver.close()
    exact = [(tree, line) for _, line in sent] + [(tree, line) for line, bound in rendered if not bound]
    return exact, [(tree, line) for line, bound in rendered if bound]
