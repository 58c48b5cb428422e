"""Hypothesis strategies of bad input: junk values, mutations of valid documents, bad command-line values and bad
instrument replies. Shared by tests/reliability/test_bad_input.py and bench/bad_input_cases.py."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

#: Values a mistyped or corrupted document can hold (None: the key deleted, where a format has no null).
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.just(-1), st.just(0), st.just(10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -1e308]),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.lists(st.floats(allow_nan=True), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)

#: Numbers a user can type that no parameter should take silently (with a few ordinary ones).
NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-1e999", "1e308", "-1e308", "1e30",
                     "99999999999999999999999999", "-99999999999999999999999999", "0", "-0", "-1", "-0.5", "1e-320",
                     "", " ", "abc", "1,2", "0x10", "1_000", "--1", "1e", "½", "١٢", "1.5", "3", "64"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)

#: Text an instrument might send when something is wrong: garbage, truncated numbers, empty, NaN, over-range codes.
REPLY_TEXT = st.one_of(
    st.sampled_from(["", " ", "\x00", "nan", "NAN", "+NAN", "inf", "-INF", "9.91E37", "+9.9E+37", "-9.91e37",
                     "+1.0E+99", "1e400", "+1.23E", "+1.2", "1.", ".", "+", "-", "1,", ",", "1,2,3", "0,\"", "ERR",
                     "-113,\"Undefined header\"", "OK", "1 V", "1 mA", "+8.27 V", "E09", "#15hello", "\xff\xfe",
                     "1\x001", "0", "1", "+0", "+1", "-1", "2", "1e-3", "1.5500000E-06", "LOGGING_STABILITY",
                     "Keysight,N7778C", "a,b,c,d,e", "a,,c,d", ",,,"]),
    st.text(st.characters(max_codepoint=255), max_size=30),     # a line carries bytes (latin-1 on the wire)
    st.from_regex(r"[+-]?[0-9]{1,3}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.lists(st.from_regex(r"[+-]?[0-9]\.[0-9]{1,3}E[+-][0-9][0-9]", fullmatch=True), max_size=6).map(",".join),
)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested dict/list document."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list) and len(doc) <= 64:
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


def replace(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced (or the key deleted, or renamed when ``delete`` is
    the string ``"rename"``)."""
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        value_before = node.pop(path[-1])
        if delete == "rename":
            node[f"{path[-1]}_x"] = value_before
    else:
        node[path[-1]] = value
    return out


def mutation(doc: Any) -> st.SearchStrategy[tuple[tuple, Any, Any]]:
    """(path, junk value, delete/rename/replace) of one place of ``doc``."""
    return st.tuples(st.sampled_from(paths(doc)), JUNK, st.sampled_from([False, False, True, "rename"]))


def corrupt_bytes(text: bytes) -> st.SearchStrategy[bytes]:
    """A file damaged on disk: truncated, emptied, overwritten with garbage, a stray byte, a non-UTF-8 byte."""
    n = len(text)
    return st.one_of(
        st.integers(0, n).map(lambda i: text[:i]),
        st.just(b""),
        st.binary(max_size=64),
        st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=4)).map(lambda t: text[:t[0]] + t[1] + text[t[0]:]),
        st.integers(0, max(n - 1, 0)).map(lambda i: text[:i] + b"\xff" + text[i + 1:]),
    )
