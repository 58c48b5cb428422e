"""Recoveries: faults a transport or driver survived by itself (a query sent again after a timeout, a line brought
back in step), reported to whoever listens, so that a run record can say what happened without parsing logs.

The retry policy lives with the code that retries: :class:`~labctl.drivers.transport.BaseTransport` sends a timed-out
*query* again after a device clear or flush (``TransportSettings.retries``, once by default); the Qontrol driver
resynchronises and sends again (every command it sends is a query or an absolute set); a SCPI query whose reply
does not parse is asked once more after a device clear. Writes without a reply are never repeated.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]

_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


def note(instrument: str, command: str | None, fault: str, action: str) -> None:
    """One recovery: ``fault`` (what went wrong, one line) on ``command``, survived by ``action``."""
    entry = {"instrument": instrument, "command": command, "fault": fault, "action": action}
    log.warning("%s: recovered from %s on %r: %s", instrument, fault, command, action)
    with _LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(entry)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with every recovery noted inside the block."""
    with _LOCK:
        _LISTENERS.append(listener)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(listener)
