"""Instrument and channel base classes with declarative settings (PyMeasure-style).

A driver declares each simple set/query command once, as a :class:`Setting`, beside the manual's spelling::

    wavelength_m = Setting(":SOUR0:WAV?", ":SOUR0:WAV {value:.6E}", "Output wavelength.",
                           validator=Range(1.2e-6, 1.7e-6, " m"), reply="{:+.8E}", default=1.55e-6)

The same declaration serves the driver (validate -> format -> write; query -> strict parse) and the protocol
simulation (the shipped pyvisa-sim YAML is generated from it, see :mod:`labctl.drivers.simgen`), so a command
spelling exists in exactly one place.

Every driver is built the same way: ``Driver(address, resource_manager=None)`` for a VISA resource name (or a
serial URL/port for serial instruments), or ``Driver(transport)`` with an already open transport.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar, overload

import numpy as np
from labctl.drivers.clock import Clock
from labctl.drivers.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentReportedError,
    LimitError,
)
from labctl.drivers.parsing import (
    Identity,
    parse_float,
    parse_idn,
    parse_int,
    parse_scpi_error,
)
from labctl.drivers.transport import BaseTransport, TransportSettings, open_transport
from labctl.drivers.validators import Validator

log = logging.getLogger(__name__)

T = TypeVar("T")


class Setting(Generic[T]):
    """One documented query/command pair.

    ``query`` and ``command`` are format strings: ``{ch}`` is replaced by the owning channel's id and
    ``{value}`` by the validated, formatted value. ``reply`` and ``default`` describe how the real instrument
    formats its answer and its power-on value; they are used only to generate the protocol simulation.
    ``mapping`` translates Python values to instrument tokens (and back, for queries). ``ack`` is the line a
    set command answers with on instruments that acknowledge every command (Qontrol, greymatter: ``OK``).
    ``snapshot=False`` keeps a query out of :meth:`Instrument.snapshot` (readings that trigger a measurement, or
    replies whose unit depends on another setting and are reported by the driver in SI instead).
    """

    def __init__(
        self,
        query: str | None,
        command: str | None,
        doc: str,
        *,
        parse: Callable[[str], Any] = parse_float,
        validator: Validator | None = None,
        mapping: dict[Any, str] | None = None,
        reply: str = "{}",
        default: Any = None,
        unit: str = "",
        ack: str | None = None,
        snapshot: bool = True,
    ) -> None:
        self.query = query
        self.snapshot = snapshot
        self.command = command
        self.__doc__ = doc
        self.parse = parse
        self.validator = validator
        self.mapping = mapping
        self.reply = reply
        self.default = default
        self.unit = unit
        self.ack = ack
        self.name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...

    @overload
    def __get__(self, instance: Any, owner: type) -> T: ...

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        if self.query is None:
            raise AttributeError(f"{owner.__name__}.{self.name} is write-only")
        command = instance._fill(self.query)
        reply = instance.query(command)
        if self.mapping is not None:
            inverse = {v: k for k, v in self.mapping.items()}
            token = reply.strip()
            if token not in inverse:
                raise InstrumentReplyError(f"unexpected reply {reply!r}; expected one of {list(inverse)}",
                                           instrument=instance.name, address=instance.address, command=command)
            return inverse[token]
        return instance.parse_reply(command, reply, self.parse)

    def __set__(self, instance: Any, value: Any) -> None:
        if self.command is None:
            raise AttributeError(f"{type(instance).__name__}.{self.name} is read-only")
        command = self.format_command(instance, value)
        if self.ack is None:
            instance.write(command)
        else:
            instance.check_ack(command, instance.query(command), self.ack)

    def format_command(self, instance: Any, value: Any) -> str:
        """Validate ``value`` and render the command text (raises :class:`LimitError`, sends nothing)."""
        assert self.command is not None
        what = f"{instance.name}.{self.name}"
        if self.validator is not None:
            value = self.validator(value, what)
        if self.mapping is not None:
            if value not in self.mapping:
                raise LimitError(f"{what}: {value!r} is not one of {list(self.mapping)}")
            value = self.mapping[value]
        return instance._fill(self.command, value=value)


class LimitedSetting(Setting[float]):
    """A numeric channel setting also held to the limit its instrument configured at connect (not only the
    hardware range): ``parent.check_limit(index, value_si, what=..., **limit_args)`` runs before the command is
    rendered, so a refused value never reaches the transport. ``to_si`` converts the instrument's unit to SI."""

    def __init__(self, *args: Any, to_si: float, limit_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.to_si = to_si
        self.limit_args = dict(limit_args or {})

    def format_command(self, instance: Any, value: Any) -> str:
        what = f"{instance.name}.{self.name}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise LimitError(f"{what}: {value!r} is not a number") from None
        instance.parent.check_limit(instance.index, number * self.to_si, what=what, **self.limit_args)
        return super().format_command(instance, value)


def attempt_all(name: str, steps: Any) -> None:
    """Run every step even if some fail (a safe state must try everything), then raise the first failure."""
    first: Exception | None = None
    for step in steps:
        try:
            step()
        except (InstrumentError, OSError) as exc:
            log.error("%s: safe-state step failed: %s", name, exc)
            first = first or exc
    if first is not None:
        raise first


class _Addressable:
    """What instruments and channels share: naming, I/O through the parent transport, strict parsing."""

    name: str
    address: str
    _channel_id: str = ""

    def write(self, command: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def query(self, command: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _fill(self, template: str, **values: Any) -> str:
        return template.format(ch=self._channel_id, **values)

    def parse_reply(self, command: str, reply: str, parse: Callable[[str], T]) -> T:
        """Apply a strict parser; a failure becomes an error naming the instrument, address and command."""
        try:
            return parse(reply)
        except ValueError as exc:
            raise InstrumentReplyError(str(exc), instrument=self.name, address=self.address,
                                       command=command) from None

    def check_ack(self, command: str, reply: str, ack: str) -> None:
        """Verify a set command's acknowledge line; drivers whose errors arrive in-line override this."""
        if reply.strip() != ack:
            raise InstrumentReplyError(f"expected {ack!r}, got {reply!r}", instrument=self.name,
                                       address=self.address, command=command)

    def query_parsed(self, command: str, parse: Callable[[str], T] = parse_float) -> T:  # type: ignore[assignment]
        return self.parse_reply(command, self.query(command), parse)

    def read_settings(self) -> dict[str, dict[str, Any]]:
        """Every declared setting that can be queried, read back now: ``{name: {"value": v[, "unit": u]}}``."""
        settings: dict[str, dict[str, Any]] = {}
        for setting in type(self).settings_declared():
            if setting.query is None or not setting.snapshot:
                continue
            entry: dict[str, Any] = {"value": plain(getattr(self, setting.name))}
            if setting.unit:
                entry["unit"] = setting.unit
            settings[setting.name] = entry
        return settings

    @classmethod
    def settings_declared(cls) -> Iterator[Setting[Any]]:
        """All :class:`Setting` declarations of this class (for simulation generation and conformance tests)."""
        seen: set[str] = set()
        for klass in cls.__mro__:
            for key, value in vars(klass).items():
                if isinstance(value, Setting) and key not in seen:
                    seen.add(key)
                    yield value


def plain(value: Any) -> Any:
    """A value as JSON can hold it (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


class Instrument(_Addressable):
    """Base for all drivers: owns the transport and the instrument's line settings."""

    #: Line settings from the instrument's manual; drivers override.
    line_settings: ClassVar[TransportSettings] = TransportSettings()
    #: A short label used in logs and errors when the caller gives no name.
    label: ClassVar[str] = "instrument"
    #: Whether :meth:`close` first puts the instrument in its safe state (lasers: output off), so that a driver
    #: used without the bench leaves its instrument as the bench would.
    safe_on_close: ClassVar[bool] = False

    def __init__(self, resource: str | BaseTransport, *, resource_manager: Any = None, name: str | None = None,
                 timeout_s: float | None = None, clock: Clock | None = None) -> None:
        """``resource``: a VISA resource name, a serial port or URL, or an open transport; ``clock``: what the
        transport's waits pass on (a bench's clock; default the wall clock)."""
        self.name = name or self.label
        if isinstance(resource, BaseTransport):
            self.transport = resource
        else:
            settings = self.line_settings
            if timeout_s is not None:
                settings = replace(settings, timeout_s=timeout_s)
            self.transport = open_transport(resource, name=self.name, resource_manager=resource_manager,
                                            settings=settings, clock=clock)
        self.address = self.transport.address
        log.info("opened %s at %s", self.name, self.address)

    def connect_or_close(self, resource: str | BaseTransport, connect: Callable[[], T]) -> T:
        """Run the connect sequence; if it fails and this driver opened the transport itself, close it before the
        error propagates (a failed connect never leaves a port open). Returns what ``connect`` returns."""
        try:
            return connect()
        except BaseException:
            if not isinstance(resource, BaseTransport):
                self.transport.close()
            raise

    def write(self, command: str) -> None:
        self.transport.write(command)

    def query(self, command: str) -> str:
        return self.transport.query(command)

    def identity(self) -> Identity:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_errors(self) -> None:
        """Raise :class:`InstrumentReportedError` if the instrument has recorded errors (drains them)."""

    def snapshot(self) -> dict[str, Any]:
        """The instrument's current settings, read back from it, for run records (QCoDeS-style snapshot).

        ``{"name", "address", "driver", "identity": {...}, "settings": {name: {"value", "unit"}}}`` plus what the
        driver adds (channels, ports, modules). Values are plain JSON types; nothing is changed on the instrument.
        """
        identity = self.identity()
        snap: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "driver": f"{type(self).__module__}.{type(self).__qualname__}",
            "identity": {"maker": identity.maker, "model": identity.model, "serial": identity.serial,
                         "firmware": identity.firmware},
            "settings": self.read_settings(),
        }
        snap.update(plain(self._snapshot_extra()))
        return snap

    def _snapshot_extra(self) -> dict[str, Any]:
        """What a driver reads back beyond its instrument-level settings (channels, modules, SI conversions)."""
        return {}

    def close(self) -> None:
        """Close the connection; with :attr:`safe_on_close`, after :meth:`safe_state` (whose failure is raised once
        the connection is closed, so that an instrument left unsafe does not go unnoticed)."""
        try:
            if self.safe_on_close and self.transport.is_open:
                self.safe_state()  # type: ignore[attr-defined]
        finally:
            self.transport.close()
            log.info("closed %s at %s", self.name, self.address)

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Channel(_Addressable):
    """A channel, slot or port of an instrument; its settings fill ``{ch}`` with the channel id."""

    def __init__(self, parent: Instrument, channel_id: int | str) -> None:
        self.parent = parent
        self._channel_id = str(channel_id)
        self.id = channel_id
        self.name = f"{parent.name}[{channel_id}]"
        self.address = parent.address

    def write(self, command: str) -> None:
        self.parent.write(command)

    def query(self, command: str) -> str:
        return self.parent.query(command)

    def check_ack(self, command: str, reply: str, ack: str) -> None:
        self.parent.check_ack(command, reply, ack)


class ScpiInstrument(Instrument):
    """SCPI conventions shared by the Keysight, Santec, Thorlabs and Keithley instruments."""

    #: Spelling of the error-queue query for this instrument family.
    error_query: ClassVar[str] = ":SYST:ERR?"
    #: Most errors drained in one call before giving up (a stuck queue must not hang a run).
    max_errors: ClassVar[int] = 50

    def identity(self) -> Identity:
        return self.query_parsed("*IDN?", parse_idn)

    def expect_model(self, models: Iterable[str], what: str | None = None) -> Identity:
        """Identify the instrument and refuse one whose model is not in ``models`` (a wrong address or driver)."""
        identity = self.identity()
        allowed = list(models)
        if identity.model not in allowed:
            raise InstrumentConnectionError(f"expected {what or f'one of {allowed}'}, found {identity}",
                                            instrument=self.name, address=self.address, command="*IDN?")
        return identity

    def operation_complete(self, timeout_s: float | None = None) -> None:
        """Block until pending operations finish (``*OPC?`` answers 1), waiting up to ``timeout_s`` for the reply
        (default: the line timeout) when the operation may take longer than an ordinary reply."""
        if timeout_s is None:
            value = self.query_parsed("*OPC?", parse_int)
        else:
            with self.transport.timeout_for(timeout_s):
                value = self.query_parsed("*OPC?", parse_int)
        if value != 1:
            raise InstrumentReplyError(f"*OPC? answered {value}, expected 1", instrument=self.name,
                                       address=self.address, command="*OPC?")

    def clear_status(self) -> None:
        self.write("*CLS")

    def read_errors(self) -> list[tuple[int, str]]:
        """Drain the error queue; returns the (code, message) pairs found (empty when clean)."""
        errors: list[tuple[int, str]] = []
        for _ in range(self.max_errors):
            code, message = self.query_parsed(self.error_query, parse_scpi_error)
            if code == 0:
                return errors
            errors.append((code, message))
        raise InstrumentReportedError(f"error queue did not empty after {self.max_errors} reads: {errors[-3:]}",
                                      errors=errors, instrument=self.name, address=self.address,
                                      command=self.error_query)

    def check_errors(self) -> None:
        errors = self.read_errors()
        if errors:
            text = "; ".join(f"{code}: {message}" for code, message in errors)
            raise InstrumentReportedError(f"instrument reported {text}", errors=errors, instrument=self.name,
                                          address=self.address, command=self.error_query)
