"""Protocol-level simulation: pyvisa-sim YAML generated from the drivers' own command declarations.

A driver declares each command once (:class:`labctl.drivers.instrument.Setting`). A :class:`SimProfile` adds what
only a simulation needs (identity reply, power-on defaults, resource names, static dialogues, error queue) and
:func:`render` turns both into a pyvisa-sim 1.1 definition. The rendered files are shipped in
``labctl/sim/yaml/`` and a test checks they equal a fresh rendering, so the spellings cannot drift apart.

Regenerate after changing a driver: ``python -m labctl.sim.protocol``.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from labctl.drivers.instrument import Setting

log = logging.getLogger(__name__)

#: Terminators per VISA interface class (pyvisa-sim ``eom``); LF everywhere unless the manual says otherwise.
LF_EOM: dict[str, tuple[str, str]] = {
    "GPIB INSTR": ("\n", "\n"),
    "TCPIP INSTR": ("\n", "\n"),
    "USB INSTR": ("\n", "\n"),
    "ASRL INSTR": ("\n", "\n"),
}

KEYSIGHT_ERROR_QUEUE = (":SYST:ERR?", '+0,"No error"', '-113,"Undefined header"')


@dataclass(frozen=True)
class SimProfile:
    """Simulation-only facts about one instrument model."""

    device: str
    driver: type
    resources: tuple[str, ...]
    identity_query: str = "*IDN?"
    identity_reply: str = ""
    dialogues: tuple[tuple[str, str | None], ...] = ()
    channels: dict[str, tuple[type, tuple[str, ...]]] = field(default_factory=dict)
    error_queue: tuple[str, str, str] | None = KEYSIGHT_ERROR_QUEUE
    #: Error text for an unknown command when the instrument has no SCPI queue (e.g. Qontrol ``E10:00``).
    error_reply: str | None = None
    eom: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(LF_EOM))
    defaults: dict[str, Any] = field(default_factory=dict)
    #: Extra keyword arguments the driver needs to open this simulated unit (e.g. heater limits).
    open_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.device.lower().replace(' ', '_')}.yaml"


def _to_pattern(template: str) -> str:
    """Turn a driver template (``{ch}``, ``{value:.6E}``) into a pyvisa-sim one (``{ch_id}``, ``{}``)."""
    out: list[str] = []
    for literal, field_name, _spec, _conv in string.Formatter().parse(template):
        out.append(literal.replace("{", "{{").replace("}", "}}") if field_name is not None else literal)
        if field_name == "ch":
            out.append("{ch_id}")
        elif field_name == "value":
            out.append("{}")
        elif field_name is not None:
            raise ValueError(f"template {template!r}: unknown field {field_name!r}")
    return "".join(out)


def _property(setting: Setting[Any], defaults: dict[str, Any]) -> dict[str, Any]:
    default = defaults.get(setting.name, setting.default)
    if default is None:
        raise ValueError(f"setting {setting.name!r} has no simulation default; give one in the driver or profile")
    if setting.mapping is not None and default in setting.mapping:
        default = setting.mapping[default]
    entry: dict[str, Any] = {"default": default}
    if setting.query is not None:
        entry["getter"] = {"q": _to_pattern(setting.query), "r": setting.reply}
    if setting.command is not None:
        entry["setter"] = {"q": _to_pattern(setting.command)}
        if setting.ack is not None:
            entry["setter"]["r"] = setting.ack
    specs = setting.validator.spec() if setting.validator is not None else {}
    if setting.mapping is not None:
        tokens = list(setting.mapping.values())
        kind = "int" if all(t.lstrip("+-").isdigit() for t in tokens) else "str"
        specs = {"type": kind, "valid": [int(t) if kind == "int" else t for t in tokens]}
    if not specs:
        specs = {"type": "float" if isinstance(default, float) else "int" if isinstance(default, int) else "str"}
    entry["specs"] = specs
    return entry


def _setter_specificity(setting: Setting[Any]) -> int:
    """Length of the fixed text of a setter pattern: pyvisa-sim tries setters in order and its ``{}`` fields
    match any text, so ``V{ch}={value}`` listed first would swallow ``VMAX3=...``; more specific goes first."""
    if setting.command is None:
        return 0
    return -sum(len(literal) for literal, *_ in string.Formatter().parse(setting.command))


def _ordered(settings: Any) -> list[Setting[Any]]:
    return sorted(settings, key=_setter_specificity)


def render(profile: SimProfile) -> dict[str, Any]:
    """The pyvisa-sim definition of one instrument, as a plain dict ready for YAML."""
    device: dict[str, Any] = {
        "eom": {key: {"q": q, "r": r} for key, (q, r) in profile.eom.items()},
    }
    if profile.error_queue is not None:
        query, default, command_error = profile.error_queue
        device["error"] = {"error_queue": [{"q": query, "default": default, "command_error": command_error}]}
    elif profile.error_reply is not None:
        device["error"] = profile.error_reply
    dialogues = [{"q": profile.identity_query, "r": profile.identity_reply}]
    for query, reply in profile.dialogues:
        dialogues.append({"q": query} if reply is None else {"q": query, "r": reply})
    device["dialogues"] = dialogues
    channel_classes = {klass for klass, _ in profile.channels.values()}
    props = {s.name: _property(s, profile.defaults) for s in _ordered(profile.driver.settings_declared())
             if not any(s is c for klass in channel_classes for c in klass.settings_declared())}
    if props:
        device["properties"] = props
    if profile.channels:
        device["channels"] = {
            group: {
                "ids": list(ids),
                "can_select": True,
                "properties": {s.name: _property(s, profile.defaults)
                               for s in _ordered(klass.settings_declared())},
            }
            for group, (klass, ids) in profile.channels.items()
        }
    return {
        "spec": "1.1",
        "devices": {profile.device: device},
        "resources": {name: {"device": profile.device} for name in profile.resources},
    }


class _Dumper(yaml.SafeDumper):
    """Writes control characters (terminators) as readable double-quoted escapes."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = '"' if any(c in value for c in "\r\n\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render_text(profile: SimProfile) -> str:
    header = (f"# pyvisa-sim definition of the {profile.device}, generated from labctl.drivers by "
              "`python -m labctl.sim.protocol`.\n# Do not edit by hand: change the driver or its SimProfile.\n")
    return header + yaml.dump(render(profile), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def yaml_dir() -> Path:
    return Path(str(resources.files("labctl.sim") / "yaml"))


def yaml_path(device_or_profile: str | SimProfile) -> Path:
    """Path of a shipped YAML, for ``pyvisa.ResourceManager(f"{path}@sim")``."""
    if isinstance(device_or_profile, SimProfile):
        return yaml_dir() / device_or_profile.filename
    return yaml_dir() / f"{device_or_profile.lower().replace(' ', '_')}.yaml"


def all_profiles() -> list[SimProfile]:
    """Every instrument profile known to labctl (one module per instrument in :mod:`labctl.sim.profiles`)."""
    from labctl.sim import profiles

    return profiles.ALL


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for profile in all_profiles():
        path = yaml_path(profile)
        path.write_text(render_text(profile))
        log.info("wrote %s", path)


if __name__ == "__main__":
    # Re-import so that profiles and this entry point share one SimProfile class (not the __main__ copy).
    from labctl.sim.protocol import main as _main

    _main()
