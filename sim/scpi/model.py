"""Base of the SCPI instrument models: a program message is parsed with the instrument's command tree and each
program message unit runs the handler bound to its action; query replies are joined by ``;`` (IEEE 488.2 §8.4.1).

A subclass names its tree and binds handlers to the tree's actions::

    class KeysightLaserModel(ScpiModel):
        tree = keysight_n777xc.TREE
        plain = {"sweep_mode": KeysightLaserTree.sweep_mode, ...}

        @handles("set wavelength_m")
        def _set_wavelength(self, call: Parsed) -> None: ...

``plain`` maps actions that are plain instrument state (set stores, query answers) to the driver's declaration of
the same setting, so the power-on default and the reply format live once, in the driver (a profile may override
a default, as for the generated pyvisa-sim YAML). State is kept per numeric-suffix combination (one value per
port of a power meter). Handlers read and change it with :meth:`value` and :meth:`store`.

Common commands and ``:SYSTem:ERRor?`` are answered here from the :class:`StatusModel`. Command errors (-1xx)
come from the parser; a handler refuses a value by raising :class:`ScpiError` (execution error, -2xx) or queues
an instrument-specific error with ``self.status.push``. An action the model does not emulate: a command is
accepted and remembered (a query of the same action echoes it), a query never set answers nothing and queues
``-200,"Execution error"`` (the client times out, as it would on a real instrument answering an error).

Virtual time: every program message unit is charged :meth:`latency_s` of its parsed form before it runs (a message
of one unit costs what one exchange costs in the reference timing table); a rejected unit costs the plain SCPI
exchange time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

from labctl.sim.device_model import DeviceModel, Reply
from labctl.sim.scpi.errors import DATA_OUT_OF_RANGE, ScpiError
from labctl.sim.scpi.mnemonic import Mnemonic
from labctl.sim.scpi.params import Choice, Keyword, Num
from labctl.sim.scpi.parser import Parsed, Parser
from labctl.sim.scpi.status import ESR_OPC, StatusModel
from labctl.sim.scpi.tree import Tree

log = logging.getLogger(__name__)

EXECUTION_ERROR = -200
QUERY_INTERRUPTED = -410
QUERY_UNTERMINATED = -420


def handles(*actions: str) -> Callable[[Callable[..., Reply]], Callable[..., Reply]]:
    """Bind the decorated method to tree actions (``"set wavelength_m"``, ``"query power"``, ``"do reset"``)."""

    def mark(method: Callable[..., Reply]) -> Callable[..., Reply]:
        method._scpi_actions = actions  # type: ignore[attr-defined]
        return method

    return mark


@lru_cache(maxsize=None)
def _cached_parser(tree: Tree) -> Callable[[str], list[Any]]:
    """One parser per tree with its results remembered: parsing is pure (the level resets with every message), and
    a bench repeats the same few messages; the cache is bounded."""
    return lru_cache(maxsize=2048)(Parser(tree).parse)


def nr1(value: int | bool) -> str:
    """IEEE 488.2 NR1 (integer) reply."""
    return f"{int(value):d}"


def nr3(value: float, digits: int = 6) -> str:
    """IEEE 488.2 NR3 (exponent) reply, e.g. ``+1.550000E-06``."""
    return f"{value:+.{digits}E}"


def block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length arbitrary block ``#<d><len><payload>``."""
    length = str(len(payload))
    return f"#{len(length)}{length}".encode("ascii") + payload


def limit_keyword(call: Parsed) -> Keyword | None:
    """The ``MINimum``/``MAXimum``/``DEFault`` a query asks for (a ``_LIMIT`` choice or a numeric keyword), or None."""
    if not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, Keyword):
        return arg
    return Keyword(arg) if arg in ("MIN", "MAX", "DEF") else None


def _format(template: str, value: Any) -> str:
    if "d}" in template and not isinstance(value, int):
        value = int(round(float(value)))
    return template.format(value)


def _plain_reply(value: Any) -> str:
    """Reply for a remembered value of an action no declaration describes."""
    if isinstance(value, bool | int):
        return nr1(value)
    if isinstance(value, float):
        return nr3(value)
    if isinstance(value, tuple):
        return ",".join(_plain_reply(v) for v in value)
    return str(value)


class ScpiModel(DeviceModel):
    """An instrument that speaks SCPI through its command tree (see the module docstring)."""

    tree: ClassVar[Tree]
    #: Action name -> the driver's Setting declaring that state (default, reply format).
    plain: ClassVar[dict[str, Any]] = {}
    #: Numeric suffixes that select separate state (``("n",)``: one value per power-meter port); others do not.
    state_suffixes: ClassVar[tuple[str, ...]] = ()
    #: Error queue length (SCPI-99 requires at least 2; the manuals consulted give none: 30 is this model's choice).
    error_queue_size: ClassVar[int] = 30
    blocks_in_messages = True
    _actions: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = dict(getattr(cls, "_actions", {}))
        for name, member in vars(cls).items():
            for action in getattr(member, "_scpi_actions", ()):
                table[action] = name
        cls._actions = table

    def __init__(self, name: str) -> None:
        super().__init__(name)
        tree = type(self).tree
        known = {a for c in tree.commands for a in (c.set_action, c.query_action) if a is not None}
        unknown = sorted(set(self._actions) - known - set(_COMMON))
        if unknown:
            raise TypeError(f"{type(self).__name__} binds actions its tree {tree.name!r} does not have: {unknown}")
        self._parse = _cached_parser(tree)
        self.status = StatusModel(size=self.error_queue_size)
        self._handlers: dict[str, Callable[[Parsed], Reply]] = {a: getattr(self, m) for a, m in self._actions.items()}
        self._defaults: dict[str, Any] = {}
        self._values: dict[tuple[str, tuple[tuple[str, int], ...]], Any] = {}
        self._unmodelled: dict[tuple[str, tuple[tuple[str, int], ...]], Any] = {}

    def attach(self, bench: Any, profile: Any) -> None:
        super().attach(bench, profile)
        self._clock = self.chip.clock  # the bench's one clock (every message advances it)
        if profile.error_queue is not None:
            self.status.no_error = profile.error_queue[1]
        self._defaults = {name: self._declared_default(setting) for name, setting in self.plain.items()}

    def _declared_default(self, setting: Any) -> Any:
        """Power-on value as the generated YAML has it: the profile's override, else the driver's default, in the
        instrument's own token when the setting maps values to tokens."""
        assert self.profile is not None
        default = self.profile.defaults.get(setting.name, setting.default)
        if setting.mapping is not None and default in setting.mapping:
            default = setting.mapping[default]
        return default

    # -- state -------------------------------------------------------------------------------------------------
    def _key(self, name: str, suffixes: dict[str, int]) -> tuple[str, tuple[tuple[str, int], ...]]:
        return name, tuple((k, suffixes[k]) for k in self.state_suffixes if k in suffixes)

    def value(self, name: str, **suffixes: int) -> Any:
        """Present value of plain state ``name`` (per suffix, e.g. ``n=3`` for port 3)."""
        return self._values.get(self._key(name, suffixes), self._defaults[name])

    def store(self, name: str, value: Any, **suffixes: int) -> None:
        self._values[self._key(name, suffixes)] = value

    def reset(self) -> None:
        """``*RST``: plain state back to its power-on values; subclasses reset what else they hold."""
        self._values.clear()
        self._unmodelled.clear()

    # -- messages ----------------------------------------------------------------------------------------------
    def exchange(self, message: str) -> Reply:
        clock = self._clock
        replies: list[str | bytes] = []
        for result in self._parse(message):
            if isinstance(result, ScpiError):
                clock.advance(self.chip.spec.timing.scpi_query_s, self.category)
                log.debug("%s: %s", self.name, result)
                self.status.push(result.code)
                continue
            clock.advance(self.latency_s(result), self.category)
            try:
                reply = self.run(result, replies)
            except ScpiError as exc:
                log.debug("%s: %r refused: %s", self.name, result.text, exc)
                self.status.push(exc.code)
                continue
            if result.query and reply is not None:
                replies.append(reply)
        if not replies:
            return None
        if len(replies) == 1:  # one query in the message (the common case): its reply as it is
            return replies[0]
        if any(isinstance(r, bytes) for r in replies):
            return b";".join(r if isinstance(r, bytes) else r.encode("latin-1") for r in replies)
        return ";".join(replies)  # type: ignore[arg-type]

    def run(self, call: Parsed, replies: list[str | bytes]) -> Reply:
        """Execute one parsed unit: the bound handler, the common commands, plain state, or the fallback."""
        handler = self._handlers.get(call.action)
        if handler is not None:
            return handler(call)
        common = _COMMON.get(call.action)
        if common is not None:
            return common(self, call, replies)
        if call.name in self.plain:
            return self.run_plain(call)
        return self._unmodelled_action(call)

    def latency_s(self, call: Any) -> float:  # type: ignore[override]
        """Virtual time of one program message unit (default: one SCPI exchange of the timing table)."""
        return float(self.chip.spec.timing.scpi_query_s)

    # -- plain state -------------------------------------------------------------------------------------------
    def run_plain(self, call: Parsed) -> Reply:
        """Set or query plain state ``call.name`` (MIN/MAX/DEF resolved by :meth:`_keyword_value`)."""
        name = call.name
        setting = self.plain[name]
        if call.query:
            keyword = limit_keyword(call)
            value = self.value(name, **call.suffixes) if keyword is None else self._keyword_value(call, name, keyword)
            return _format(setting.reply, value)
        value = call.args[0]
        if isinstance(value, Keyword):
            value = self._keyword_value(call, name, value)
        self.store(name, _stored(value), **call.suffixes)
        return None

    def _keyword_value(self, call: Parsed, name: str, keyword: Keyword) -> Any:
        """MIN/MAX from the set form's parameter range in the tree, DEF the power-on value."""
        if keyword is Keyword.DEF:
            return self._defaults[name]
        param = call.cmd.params[0] if call.cmd is not None and call.cmd.params else None
        if isinstance(param, Num):
            return param.lo if keyword is Keyword.MIN else param.hi
        raise ScpiError(DATA_OUT_OF_RANGE, f"{keyword.value} has no value for {name}")

    def _unmodelled_action(self, call: Parsed) -> Reply:
        key = self._key(call.name, call.suffixes)
        if not call.query:
            log.debug("%s: %s is not emulated (accepted, no effect)", self.name, call.header)
            self._unmodelled[key] = call.args[0] if len(call.args) == 1 else call.args
            return None
        if key in self._unmodelled:
            value = self._unmodelled[key]
            param = call.cmd.params[0] if call.cmd is not None and len(call.cmd.params) == 1 else None
            if isinstance(param, Choice) and param.codes:
                # a setting that also takes numbers answers with its number (SCPI booleans and coded choices)
                codes = {Mnemonic.parse(option).short: code for code, option in param.codes}
                value = codes.get(value, value)
            return _plain_reply(value)
        log.warning("%s: %s is not emulated; answering nothing", self.name, call.header)
        self.status.push(EXECUTION_ERROR)
        return None

    # -- what the connection reports ---------------------------------------------------------------------------
    def query_interrupted(self) -> bool:
        self.status.push(QUERY_INTERRUPTED)
        return True

    def query_unterminated(self) -> None:
        self.status.push(QUERY_UNTERMINATED)


def _stored(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


# -- IEEE 488.2 common commands and the SCPI error query, shared by every model --------------------------------------
def _identity(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    assert model.profile is not None
    return model.profile.identity_reply


def _reset(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    model.reset()
    return None


def _clear_status(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    model.status.clear()
    return None


def _opc(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    model.status.esr |= ESR_OPC  # every operation of the models completes before the next message is read
    return None


def _opc_query(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return "1"


def _set_register(name: str) -> Callable[[ScpiModel, Parsed, list[Any]], Reply]:
    def run(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
        setattr(model.status, name, int(call.args[0]))
        return None

    return run


def _get_register(name: str) -> Callable[[ScpiModel, Parsed, list[Any]], Reply]:
    def run(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
        return nr1(getattr(model.status, name))

    return run


def _esr(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return nr1(model.status.read_esr())


def _stb(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return nr1(model.status.status_byte(message_available=bool(replies)))


def _self_test(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return "0"  # 488.2 §10.38: 0 = passed


def _nothing(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return None  # *WAI: operations are sequential already; *TRG without a trigger model


def _system_error(model: ScpiModel, call: Parsed, replies: list[Any]) -> Reply:
    return model.status.pop()


_COMMON: dict[str, Callable[[ScpiModel, Parsed, list[Any]], Reply]] = {
    "query identity": _identity,
    "do reset": _reset,
    "do clear_status": _clear_status,
    "do operation_complete_flag": _opc,
    "query operation_complete": _opc_query,
    "set event_status_enable": _set_register("ese"),
    "query event_status_enable": _get_register("ese"),
    "query event_status_register": _esr,
    "set service_request_enable": _set_register("sre"),
    "query service_request_enable": _get_register("sre"),
    "query status_byte": _stb,
    "query self_test": _self_test,
    "do wait": _nothing,
    "do trigger": _nothing,
    "query system_error": _system_error,
}
