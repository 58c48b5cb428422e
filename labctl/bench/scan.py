"""Discovery (``labctl bench scan``): which instruments answer on this computer, which labctl driver fits each,
and the bench-file stanza to paste.

Only identity queries are sent, with short timeouts: ``*IDN?`` to every VISA resource; on serial ports, which give
no hint of their protocol, the identity commands of the serial instruments labctl drives, one after the other
until one is answered: ``*IDN?`` at 115200 baud (greymatter; a Qontrol answers it with an ``E10`` error line, which
it also keeps in its ``log?`` history, and nothing else happens), ``id?`` at 115200 baud (Qontrol), ``*IDN?`` at
9600 baud (SCPI instruments on RS-232 at their factory rate, e.g. the Keithley 2400). Nothing is configured, reset
or switched.

The identity -> driver table uses the models each driver accepts (its own constants), so a driver that learns a
new model is found here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from labctl.drivers import greymatter, keithley_2400, keysight_8164b, keysight_daq970a, keysight_n774xa
from labctl.drivers import keysight_n777xc, qontrol
from labctl.drivers.errors import InstrumentError
from labctl.drivers.parsing import Identity, parse_idn
from labctl.drivers.transport import BaseTransport, SerialTransport, TransportSettings, VisaTransport

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 0.5
#: Lines read after a query before giving up on an answer (console banners, prompts, echoes).
MAX_LINES = 8


@dataclass(frozen=True)
class Matcher:
    """An identity a labctl driver accepts, and the instrument name its stanza suggests."""

    driver: str
    accepts: Callable[[Identity], bool]
    role: str


def _keysight(models: Iterable[str]) -> Callable[[Identity], bool]:
    names = set(models)
    return lambda i: i.model in names and i.maker.upper().split()[0] in ("KEYSIGHT", "AGILENT", "HEWLETT-PACKARD")


MATCHERS: tuple[Matcher, ...] = (
    Matcher("keysight_8164b", _keysight(keysight_8164b.MAINFRAME_MODELS), "mainframe"),
    Matcher("keysight_n777xc", _keysight(keysight_n777xc.MODELS), "laser"),
    Matcher("keysight_n774xa", _keysight(keysight_n774xa.PORTS_BY_MODEL), "meter"),
    Matcher("keysight_daq970a", _keysight(keysight_daq970a.MODELS), "adc"),
    Matcher("santec_tsl570", lambda i: i.maker.upper() == "SANTEC" and i.model.upper().startswith("TSL-"), "laser"),
    Matcher("thorlabs_pm100", lambda i: i.maker.upper() == "THORLABS" and i.model.upper().startswith("PM"), "meter"),
    Matcher("keithley_2400", lambda i: i.maker.upper().startswith("KEITHLEY")
            and i.model.upper() in ("MODEL 2400", "MODEL 2401"), "smu"),
    Matcher("greymatter", lambda i: i.maker.lower() == "greymatter", "heaters"),
    Matcher("qontrol", lambda i: i.maker == "Qontrol" and i.model in qontrol.FULL_SCALE, "heaters"),
)


def match_driver(identity: Identity) -> Matcher | None:
    return next((m for m in MATCHERS if m.accepts(identity)), None)


@dataclass(frozen=True)
class Probe:
    """One identity question on a serial port: line settings, query, and how to read the answer."""

    label: str
    settings: TransportSettings
    query: str
    parse: Callable[[str], Identity]


def _parse_qontrol_id(line: str) -> Identity:
    found = qontrol.DEVICE_ID.fullmatch(qontrol.clean_line(line))
    if not found:
        raise ValueError(f"not a Qontrol id: {line!r}")
    return Identity("Qontrol", found["model"], found["serial"], "")


SERIAL_PROBES: tuple[Probe, ...] = (
    Probe("*IDN? at 115200 baud", TransportSettings(baud_rate=115200, retries=0), greymatter.IDN_QUERY, parse_idn),
    Probe("id? at 115200 baud", TransportSettings(baud_rate=115200, retries=0), qontrol.ID_QUERY, _parse_qontrol_id),
    Probe("*IDN? at 9600 baud", TransportSettings(baud_rate=9600, retries=0), keithley_2400.IDN_QUERY, parse_idn),
)


@dataclass
class Found:
    """What one resource answered (``identity`` None: nothing labctl understood)."""

    address: str
    interface: str                     # "visa" or "serial"
    reply: str | None = None
    identity: str | None = None
    driver: str | None = None
    model: str | None = None
    name: str | None = None
    stanza: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ask(transport: BaseTransport, query: str, parse: Callable[[str], Identity]) -> tuple[str | None, Identity | None]:
    """Send ``query``; the first line (of a few) that ``parse`` accepts, skipping prompts, echoes and error lines."""
    transport.write(query)
    first: str | None = None
    for _ in range(MAX_LINES):
        try:
            line = transport.read_line().strip().lstrip(greymatter.PROMPT).strip()
        except InstrumentError:
            break
        if not line or line.upper() == query.upper():
            continue
        first = first or line
        try:
            return line, parse(line)
        except ValueError:
            continue
    return first, None


def _visa(address: str, resource_manager: Any, timeout_s: float) -> Found:
    found = Found(address, "visa")
    terminations = ("\n", "\r") if address.upper().endswith("::SOCKET") else ("\n",)  # Santec LAN socket: CR
    for term in terminations:
        settings = TransportSettings(write_termination=term, read_termination=term, timeout_s=timeout_s, retries=0)
        try:
            transport = VisaTransport(address, resource_manager=resource_manager, settings=settings)
        except InstrumentError as exc:
            found.note = f"cannot open: {exc.detail}"
            return found
        try:
            found.reply, identity = _ask(transport, "*IDN?", parse_idn)
        except InstrumentError as exc:
            found.note, identity = f"no answer to *IDN? ({exc.detail})", None
        finally:
            transport.close()
        if identity is not None:
            _describe(found, identity)
            return found
    found.note = found.note or (f"answered {found.reply!r}, not an identity labctl knows" if found.reply
                                else "no answer to *IDN?")
    return found


def _serial(url: str, timeout_s: float) -> Found:
    found = Found(url, "serial")
    for probe in SERIAL_PROBES:
        try:
            transport = SerialTransport(url, settings=replace(probe.settings, timeout_s=timeout_s))
        except InstrumentError as exc:
            found.note = f"cannot open: {exc.detail}"
            return found
        try:
            reply, identity = _ask(transport, probe.query, probe.parse)
        except InstrumentError as exc:
            reply, identity = None, None
            log.debug("%s: %s: %s", url, probe.label, exc)
        finally:
            transport.close()
        found.reply = found.reply or reply
        if identity is not None:
            found.note = f"answered {probe.label}"
            _describe(found, identity)
            return found
    found.note = "no identity answer (" + "; ".join(p.label for p in SERIAL_PROBES) + ")"
    return found


def _describe(found: Found, identity: Identity) -> None:
    found.identity = str(identity) if identity.firmware else \
        f"{identity.maker} {identity.model} (serial {identity.serial})"
    found.model = identity.model
    matcher = match_driver(identity)
    if matcher is None:
        found.note = "identified, but no labctl driver accepts this model"
        return
    found.driver = matcher.driver
    found.name = matcher.role


def _name_instruments(found: Sequence[Found]) -> None:
    """Unique bench-file names: the role, numbered when it repeats (laser0, laser1, ...)."""
    roles = [f.name for f in found if f.name]
    counters: dict[str, int] = {}
    for f in found:
        if f.name is None:
            continue
        role = f.name
        if roles.count(role) > 1:
            f.name = f"{role}{counters.get(role, 0)}"
            counters[role] = counters.get(role, 0) + 1
        f.stanza = stanza(f)


def stanza(found: Found) -> str:
    """The ``[instruments.<name>]`` table for a bench file (the model line is checked against the instrument at
    connect, and lets the bench check limits against that model's full scale before connecting)."""
    assert found.driver is not None and found.name is not None
    return "\n".join([f"[instruments.{found.name}]  # {found.identity}", f'driver = "{found.driver}"',
                      f'address = "{found.address}"', f'model = "{found.model}"'])


def serial_ports() -> list[str]:
    """Serial ports of this computer (pyserial's list; device paths such as /dev/ttyUSB0 or COM3)."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())


def visa_resources(resource_manager: Any) -> list[str]:
    """VISA resources the resource manager lists, serial ones left to the serial probes."""
    return [r for r in resource_manager.list_resources() if not r.upper().startswith("ASRL")]


def scan(*, resource_manager: Any = None, visa: Sequence[str] | None = None, serial: Sequence[str] | None = None,
         timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Found]:
    """Ask every VISA resource and serial port who it is (lists injected for tests, discovered otherwise)."""
    if resource_manager is None and (visa is None or len(visa) > 0):
        import pyvisa

        resource_manager = pyvisa.ResourceManager("@py")
    if visa is None:
        visa = visa_resources(resource_manager)
    serial = serial_ports() if serial is None else serial
    results = [_visa(address, resource_manager, timeout_s) for address in visa]
    results += [_serial(url, timeout_s) for url in serial]
    _name_instruments(results)
    return results


def summarize(found: Sequence[Found]) -> str:
    lines = [f"{len(found)} resource{'s' if len(found) != 1 else ''} asked"]
    for f in found:
        what = f"{f.identity} -> driver {f.driver}" if f.driver else (f.identity or "?")
        lines.append(f"  {f.address:40s} {what}" + (f"  [{f.note}]" if f.note else ""))
    stanzas = [f.stanza for f in found if f.stanza]
    if stanzas:
        lines += ["", "# paste into the [instruments] part of a bench file:", "\n\n".join(stanzas)]
    return "\n".join(lines)

