"""Progress bars: whole lines in a log file, and a line at least every HEARTBEAT_S while a step runs silently."""

from __future__ import annotations

import io
import time

import pytest

from labctl.runs import progress
from labctl.runs.progress import Bars


class Recording(io.StringIO):
    """A non-terminal stream that remembers when each write came."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times.append(time.monotonic())
        return super().write(text)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "DELAY_S", 0.05)
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.2)


def test_a_silent_step_still_gets_a_line_saying_what_runs_and_how_much_is_left(fast: None) -> None:
    stream = Recording()
    bars = Bars(True, stream)
    bars.update("calibrate", 1, 13)
    bars.postfix("heater characterization: heater steps (scans) 12/72")
    time.sleep(1.0)                                     # the step reports nothing meanwhile
    bars.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()                # whole lines, as a log file or a pipe reader needs them
    beats = [line for line in lines if "heater steps (scans) 12/72" in line and "1/13" in line]
    assert len(beats) >= 3
    gaps = [b - a for a, b in zip(stream.times, stream.times[1:])]
    assert max(gaps) < 0.2 + 0.2                        # heartbeat plus its polling


def test_messages_between_draws_stay_on_their_own_lines(fast: None) -> None:
    stream = Recording()
    bars = Bars(True, stream)
    bars.update("calibrate", 2, 13)
    time.sleep(0.3)
    bars.write("WARNING something")
    bars.update("calibrate", 13, 13)
    bars.close()
    assert "WARNING something" in stream.getvalue().splitlines()


def test_disabled_bars_print_nothing_and_start_no_thread(fast: None) -> None:
    stream = Recording()
    bars = Bars(False, stream)
    bars.update("calibrate", 1, 13)
    time.sleep(0.3)
    bars.close()
    assert stream.getvalue() == "" and bars._heartbeat is None
