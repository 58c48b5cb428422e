from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from . import protocol_fakeinst

if "tests.drivers" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("tests.drivers")


@pytest.fixture
def fake_serial() -> Iterator[dict]:
    """Register responders for ``fakeinst://<name>`` URLs; cleaned up after the test."""
    yield protocol_fakeinst.RESPONDERS
    protocol_fakeinst.RESPONDERS.clear()
    protocol_fakeinst.TERMINATORS.clear()
