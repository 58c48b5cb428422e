"""Errors raised by transports and drivers.

Every error names the instrument, its address and the command involved, because a lab user staring at a
traceback needs to know which box on which cable refused which line, not that "VI_ERROR_TMO" happened.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """Base class: something went wrong talking to one instrument."""

    def __init__(
        self,
        message: str,
        *,
        instrument: str = "",
        address: str = "",
        command: str | None = None,
    ) -> None:
        self.instrument = instrument
        self.address = address
        self.command = command
        self.detail = message
        where = f"{instrument or 'instrument'} at {address or '?'}"
        what = f" (command {command!r})" if command is not None else ""
        super().__init__(f"{where}{what}: {message}")


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer within the transport timeout."""


class InstrumentConnectionError(InstrumentError):
    """The instrument could not be opened, or the connection dropped."""


class InstrumentReplyError(InstrumentError):
    """A reply was malformed, out of range, or of the wrong kind; never turned into a silent NaN or zero."""


class InstrumentReportedError(InstrumentError):
    """The instrument itself reported an error (SCPI error queue, Qontrol error line, fault register)."""

    def __init__(self, message: str, *, errors: list[tuple[int, str]] | None = None, **kwargs: str | None) -> None:
        self.errors = list(errors or [])
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ComplianceError(InstrumentReportedError):
    """A source meter reading was taken with the source at its compliance limit: the value is the limit, not the
    device's current (flagged by the instrument's status word)."""


class LimitError(ValueError):
    """A requested setting lies outside an instrument's or the bench's limits; nothing was sent."""
