"""A pyvisa backend whose resources are the instruments of an emulated bench, in this process.

``pyvisa.ResourceManager(EmulatedVisaLibrary(bench_id))`` is an ordinary resource manager: drivers, PyMeasure or a
plain pyvisa script open ``GPIB0::<n>::INSTR`` (or the other names the bench lists) and read and write as on a real
bus. Each open resource is one :class:`~labctl.sim.connection.Connection` to the instrument's model. Replies are
produced synchronously while the message is written, so a read either finds its reply or times out at once (no
wall-clock wait; nothing is charged to the virtual clock).

Interface behaviour: every ``write`` ends with END asserted (pyvisa's default ``send_end``), as on GPIB, so a
message needs no terminator character; a read returns the whole waiting reply and reports END with it.
"""

from __future__ import annotations

import logging
import random
import threading
import warnings
from typing import Any

from labctl.sim.connection import Connection
from pyvisa import attributes, constants, errors, highlevel, rname
from pyvisa.resources import Resource
from pyvisa.util import LibraryPath

log = logging.getLogger(__name__)

#: Bench id -> {resource name: factory of a new connection}; filled by the emulated bench.
RESOURCES: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()

StatusCode = constants.StatusCode


def register(bench_id: str, resources: dict[str, Any]) -> None:
    with _LOCK:
        RESOURCES[bench_id] = resources


def unregister(bench_id: str) -> None:
    with _LOCK:
        RESOURCES.pop(bench_id, None)


class _Session:
    """One open resource: its attributes and its connection."""

    def __init__(self, name: str, parsed: rname.ResourceName, connection: Connection | None, rm_session: int) -> None:
        self.connection = connection
        self.interface = (parsed.interface_type_const, parsed.resource_class)
        self.attrs: dict[Any, Any] = {
            constants.ResourceAttribute.resource_manager_session: rm_session,
            constants.ResourceAttribute.resource_name: str(parsed),
            constants.ResourceAttribute.resource_class: parsed.resource_class,
            constants.ResourceAttribute.interface_type: parsed.interface_type_const,
        }


class _DirectMessageIO:
    """``write`` and ``read`` of an emulated resource: what pyvisa's ``MessageBasedResource`` does (the write
    termination appended, with its warning when the message has it already; every reply chunk taken through this
    library's ``read`` until the status stops saying "more"; the read termination checked and removed, with its
    warning), calling the library directly. pyvisa's own versions add a warning-suppression context and a debug
    record per chunk, which a library that raises its errors itself never consults, and which cost more than the
    emulated instrument's answer. Everything else (binary blocks, attributes, ``read_termination_context``) is
    pyvisa's."""

    def write(self, message: str, termination: str | None = None, encoding: str | None = None) -> int:
        term = self._write_termination if termination is None else termination  # type: ignore[attr-defined]
        if term:
            if message.endswith(term):
                warnings.warn("write message already ends with termination characters", stacklevel=2)
            message += term
        return self.visalib.write(self.session, message.encode(  # type: ignore[attr-defined]
            self._encoding if encoding is None else encoding))[0]  # type: ignore[attr-defined]

    def read(self, termination: str | None = None, encoding: str | None = None) -> str:
        if termination is not None:  # pyvisa's read_termination_context around the read
            return super().read(termination, encoding)  # type: ignore[misc]
        termination = self._read_termination  # type: ignore[attr-defined]
        visalib, session, size = self.visalib, self.session, self.chunk_size  # type: ignore[attr-defined]
        chunk, status = visalib.read(session, size)
        if status == _MORE:
            data = bytearray(chunk)
            while status == _MORE:
                chunk, status = visalib.read(session, size)
                data += chunk
            chunk = data
        message = chunk.decode(self._encoding if encoding is None else encoding)  # type: ignore[attr-defined]
        if not termination:
            return message
        if not message.endswith(termination):
            warnings.warn("read string doesn't end with termination characters", stacklevel=2)
            return message
        return message[: -len(termination)]


_MORE = StatusCode.success_max_count_read
_SEND_END = constants.ResourceAttribute.send_end_enabled
#: pyvisa's resource class -> the same class with :class:`_DirectMessageIO`.
_DIRECT_CLASSES: dict[type, type] = {}


def _direct_class(base: type) -> type:
    cls = _DIRECT_CLASSES.get(base)
    if cls is None:
        if not hasattr(base, "read_termination"):
            return base  # not message-based: nothing to shorten
        cls = _DIRECT_CLASSES[base] = type(f"Emulated{base.__name__}", (_DirectMessageIO, base), {})
    return cls


class EmulatedVisaLibrary(highlevel.VisaLibraryBase):
    """The VISA library of one emulated bench (``library_path`` is the bench id)."""

    sessions: dict[int, Any]

    @staticmethod
    def get_library_paths() -> tuple[LibraryPath, ...]:
        return (LibraryPath("unset"),)

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        return {"backend": "labctl emulated bench"}

    def _init(self) -> None:
        self.sessions = {}

    def _resources(self) -> dict[str, Any]:
        return RESOURCES.get(str(self.library_path), {})

    def _register(self, obj: Any) -> int:
        session = None
        while session is None or session in self.sessions:
            session = random.randint(1_000_000, 9_999_999)
        self.sessions[session] = obj
        return session

    # -- resource manager ----------------------------------------------------------------------------------------
    def open_default_resource_manager(self) -> tuple[int, StatusCode]:
        return self._register(self), StatusCode.success

    def list_resources(self, session: int, query: str = "?*::INSTR") -> tuple[str, ...]:
        found = rname.filter(tuple(self._resources()), query)
        if found:
            return found
        raise errors.VisaIOError(StatusCode.error_resource_not_found.value)

    def open(self, session: int, resource_name: str, access_mode: Any = constants.AccessModes.no_lock,
             open_timeout: Any = constants.VI_TMO_IMMEDIATE) -> tuple[int, StatusCode]:
        try:
            parsed = rname.parse_resource_name(resource_name)
        except rname.InvalidResourceName:
            return 0, StatusCode.error_invalid_resource_name
        factory = self._resources().get(str(parsed))
        if factory is None:
            return 0, StatusCode.error_resource_not_found
        return self._register(_Session(str(parsed), parsed, factory(), session)), StatusCode.success

    def open_resource(self, resource_name: str, access_mode: Any = constants.AccessModes.no_lock,
                      open_timeout: Any = constants.VI_TMO_IMMEDIATE, resource_pyclass: type | None = None,
                      **kwargs: Any) -> Resource:
        """pyvisa's hook for ``ResourceManager.open_resource``: the class pyvisa picked, with the direct message I/O
        of :class:`_DirectMessageIO`; opened and given ``kwargs`` as pyvisa does."""
        assert resource_pyclass is not None and self.resource_manager is not None
        res = _direct_class(resource_pyclass)(self.resource_manager, resource_name)
        for key in kwargs:
            try:
                getattr(res, key)
            except AttributeError:
                raise ValueError(f"{key!r} is not a valid attribute for type {res.__class__.__name__}") from None
            except errors.InvalidSession:
                pass
        res.open(access_mode, open_timeout)
        for key, value in kwargs.items():
            setattr(res, key, value)
        return res

    def close(self, session: Any) -> StatusCode:
        if self.sessions.pop(session, None) is None:
            return StatusCode.error_invalid_object
        return StatusCode.success

    # -- I/O -----------------------------------------------------------------------------------------------------
    def _connection(self, session: int) -> Connection:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session) or sess.connection is None:
            raise errors.VisaIOError(StatusCode.error_invalid_object.value)
        return sess.connection

    def write(self, session: int, data: bytes) -> tuple[int, StatusCode]:
        sess = self.sessions.get(session)  # (_connection inline: every message passes here)
        if not isinstance(sess, _Session) or sess.connection is None:
            raise errors.VisaIOError(StatusCode.error_invalid_object.value)
        connection = sess.connection
        send_end = sess.attrs.get(_SEND_END, True)
        try:
            connection.write(bytes(data), end=bool(send_end))
        except ConnectionError:  # the instrument is gone: a real bus reports it (no listeners, connection lost)
            raise errors.VisaIOError(StatusCode.error_connection_lost.value) from None
        return len(data), StatusCode.success

    def read(self, session: int, count: int) -> tuple[bytes, StatusCode]:
        sess = self.sessions.get(session)  # (_connection inline, as in write)
        if not isinstance(sess, _Session) or sess.connection is None:
            raise errors.VisaIOError(StatusCode.error_invalid_object.value)
        connection = sess.connection
        up = connection.attempt()
        waiting = connection.waiting() if up else 0
        if not waiting:
            if up:
                connection.read_request()
            raise errors.VisaIOError(constants.VI_ERROR_TMO)
        if connection.partial:  # a reply cut short: no END comes; VISA times out and drops the partial bytes
            connection.take(waiting)
            raise errors.VisaIOError(constants.VI_ERROR_TMO)
        if waiting > count:
            return connection.take(count), StatusCode.success_max_count_read
        return connection.take(waiting), StatusCode.success

    def clear(self, session: int) -> StatusCode:
        self._connection(session).clear()
        return StatusCode.success

    def flush(self, session: int, mask: Any) -> StatusCode:
        return StatusCode.success

    def read_stb(self, session: int) -> tuple[int, StatusCode]:
        connection = self._connection(session)
        model = connection.model
        status = getattr(model, "status", None)
        if status is None:
            return 0, StatusCode.success
        return status.status_byte(message_available=connection.waiting() > 0), StatusCode.success

    def assert_trigger(self, session: int, protocol: Any) -> StatusCode:
        return StatusCode.success

    # -- attributes ----------------------------------------------------------------------------------------------
    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, StatusCode]:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return 0, StatusCode.error_invalid_object
        attr = attributes.AttributesByID.get(attribute)
        if attr is None or not attr.in_resource(sess.interface):
            return 0, StatusCode.error_nonsupported_attribute
        if attribute == constants.VI_ATTR_ASRL_AVAIL_NUM and sess.connection is not None:
            return sess.connection.waiting(), StatusCode.success
        return sess.attrs.setdefault(attribute, attr.default), StatusCode.success

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> StatusCode:
        sess = self.sessions.get(session)
        if not isinstance(sess, _Session):
            return StatusCode.error_invalid_object
        attr = attributes.AttributesByID.get(attribute)
        if attr is None or not attr.in_resource(sess.interface):
            return StatusCode.error_nonsupported_attribute
        if not attr.write:
            return StatusCode.error_attribute_read_only
        sess.attrs[attribute] = attribute_state
        return StatusCode.success

    # -- events and locks: nothing to do on an emulated bus ------------------------------------------------------
    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> StatusCode:
        return StatusCode.success

    def lock(self, session: Any, lock_type: Any, timeout: Any, requested_key: Any = None) -> tuple[str, StatusCode]:
        return "", StatusCode.success

    def unlock(self, session: Any) -> StatusCode:
        return StatusCode.success
