"""One SCPI program mnemonic as a manual writes it (``WAVelength``): upper case is the short form, the whole word
the long form; a client may send either, in any case, and nothing else (``WAVE`` is not ``WAVelength``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mnemonic:
    declared: str
    short: str
    long: str

    @classmethod
    def parse(cls, declared: str) -> Mnemonic:
        if not declared or not declared[0].isalpha() or not all(c.isalnum() or c == "_" for c in declared):
            raise ValueError(f"not a SCPI mnemonic: {declared!r}")
        base = declared.rstrip("0123456789")
        digits = declared[len(base):]
        short = "".join(c for c in base if not c.islower())
        if not base.startswith(short):
            raise ValueError(f"{declared!r}: the short form (upper-case letters) must be a prefix")
        return cls(declared, short.upper() + digits, declared.upper())

    def matches(self, word: str) -> bool:
        """``word`` must already be upper case."""
        return word == self.short or word == self.long
