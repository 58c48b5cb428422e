"""Match incoming command lines against the drivers' own command templates.

Simulated instruments recognise commands by the very format strings the drivers send them with (``{ch}``,
``{value:.6E}``, ``{start}`` ...), so a spelling lives only in the driver.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

_FIELD_PATTERNS = {"ch": r"(?P<ch>\d+)"}


@lru_cache(maxsize=512)
def template_regex(template: str) -> re.Pattern[str]:
    """Regex for a driver template: literal text exact, each ``{name[:fmt]}`` a named group."""
    parts: list[str] = []
    for literal, field_name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field_name is None:
            continue
        if not field_name.isidentifier():
            raise ValueError(f"template {template!r}: field {field_name!r} must be a name")
        parts.append(_FIELD_PATTERNS.get(field_name, rf"(?P<{field_name}>.+?)"))
    return re.compile("^" + "".join(parts) + "$")


def match(template: str, line: str) -> dict[str, str] | None:
    """The template's fields in ``line``, or None when the line is another command."""
    found = template_regex(template).match(line)
    return None if found is None else found.groupdict()
