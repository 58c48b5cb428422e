"""Standard SCPI error codes (SCPI-99 Vol. 2 ch. 21; IEEE 488.2 §11.5.1) and the exception that carries them.

Why one place: the emulated instruments must reject what the real ones reject *with the same code*, so a client
that reads ``:SYST:ERR?`` sees ``-113,"Undefined header"`` exactly where a real unit would put it.

Command errors (-100 class) are syntax problems found by the parser; per IEEE 488.2 §6.1.6 the rest of the
program message is then discarded. Execution errors (-200 class, e.g. -222 data out of range) concern one
command only; the following program message units still run.
"""

from __future__ import annotations

#: Code -> standard message text. Only the codes the parser and trees produce, plus the few models use.
MESSAGES: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -110: "Command header error",
    -111: "Header separator error",
    -112: "Program mnemonic too long",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -121: "Invalid character in number",
    -123: "Exponent too large",
    -124: "Too many digits",
    -128: "Numeric data not allowed",
    -130: "Suffix error",
    -131: "Invalid suffix",
    -134: "Suffix too long",
    -138: "Suffix not allowed",
    -140: "Character data error",
    -141: "Invalid character data",
    -144: "Character data too long",
    -148: "Character data not allowed",
    -150: "String data error",
    -151: "Invalid string data",
    -158: "String data not allowed",
    -160: "Block data error",
    -161: "Invalid block data",
    -168: "Block data not allowed",
    -170: "Expression error",
    -178: "Expression data not allowed",
    -200: "Execution error",
    -220: "Parameter error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}

# Names for the codes used in code (reads better than bare numbers at the raise sites).
SYNTAX_ERROR = -102
INVALID_SEPARATOR = -103
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
HEADER_SEPARATOR_ERROR = -111
MNEMONIC_TOO_LONG = -112
UNDEFINED_HEADER = -113
HEADER_SUFFIX_OUT_OF_RANGE = -114
INVALID_CHARACTER_IN_NUMBER = -121
EXPONENT_TOO_LARGE = -123
TOO_MANY_DIGITS = -124
NUMERIC_DATA_NOT_ALLOWED = -128
INVALID_SUFFIX = -131
SUFFIX_TOO_LONG = -134
SUFFIX_NOT_ALLOWED = -138
INVALID_CHARACTER_DATA = -141
CHARACTER_DATA_TOO_LONG = -144
CHARACTER_DATA_NOT_ALLOWED = -148
INVALID_STRING_DATA = -151
STRING_DATA_NOT_ALLOWED = -158
INVALID_BLOCK_DATA = -161
BLOCK_DATA_NOT_ALLOWED = -168
EXPRESSION_DATA_NOT_ALLOWED = -178
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
TOO_MUCH_DATA = -223
ILLEGAL_PARAMETER_VALUE = -224


class ScpiError(Exception):
    """A rejected program message unit: the standard code, its text and what exactly was wrong."""

    def __init__(self, code: int, detail: str = "", unit: str = "") -> None:
        self.code = code
        self.message = MESSAGES.get(code, "Error")
        self.detail = detail
        self.unit = unit
        where = f" in {unit!r}" if unit else ""
        super().__init__(f"{code},{self.message}" + (f": {detail}" if detail else "") + where)

    @property
    def is_command_error(self) -> bool:
        """-100 class: the parser discards the rest of the program message (IEEE 488.2 §6.1.6)."""
        return -199 <= self.code <= -100

    def queue_entry(self) -> str:
        """The ``:SYST:ERR?`` reply text, e.g. ``-113,"Undefined header"`` (device-dependent detail omitted)."""
        return f'{self.code},"{self.message}"'
