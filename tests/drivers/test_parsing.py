"""Number lists: the one-pass check of the common case gives what parsing every element gives, failures included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labctl.drivers.parsing import parse_float, parse_float_list

_ELEMENT = st.one_of(st.from_regex(r"\s?[+-]?(\d{1,3}(\.\d{0,8})?|\.\d{1,3})([eE][+-]?\d{1,3})?\s?", fullmatch=True),
                     st.sampled_from(["", "nan", "inf", "9.91E+37", "1e999", "1_0", "a", " ", "+", "1.0.0"]))


def _each(text: str) -> list[float]:
    parts = text.strip().split(",")
    if parts == [""]:
        raise ValueError("expected a list of numbers, got an empty reply")
    return [parse_float(part) for part in parts]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(_ELEMENT, min_size=1, max_size=8))
def test_a_number_list_parses_as_its_elements_do(elements: list[str]) -> None:
    text = ",".join(elements)
    try:
        expected: list[float] | str = _each(text)
    except ValueError as exc:
        expected = str(exc)
    try:
        got: list[float] | str = parse_float_list(text)
    except ValueError as exc:
        got = str(exc)
    assert got == expected


def test_the_element_that_fails_is_named() -> None:
    with pytest.raises(ValueError, match="'9.91E\\+37' is an over-range"):
        parse_float_list("+1.0E-003,9.91E+37,2")
