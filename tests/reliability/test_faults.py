"""Injected faults: the fault layer itself, the driver fixes it exposed, the scenario matrix (every fault at several
points of every procedure, judged as tests/reliability/scenarios.py says), and signals and the bench lock with real
processes on the served bench.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from labctl.bench.bench import Bench
from labctl.bench.config import BenchConfigError, load_bench, parse_bench
from labctl.drivers import recoveries
from labctl.drivers.errors import InstrumentConnectionError, InstrumentReportedError
from labctl.sim.faults import Fault
from tests.reliability import scenarios as S

REPO = Path(__file__).resolve().parents[2]


# -- the bench file -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "needle"), [
    ({"kind": "meltdown"}, "faults.0.kind: 'meltdown' is not a fault kind"),
    ({"kind": "late", "instrument": "oven"}, "faults.0.instrument: 'oven' is not an instrument"),
    ({"kind": "late", "probability": 0}, "faults.0.probability: 0 must be a number in (0, 1]"),
    ({"kind": "drop", "down_messages": 0}, "faults.0.down_messages: 0 must be an integer >= 1"),
    ({"kind": "late", "match": "("}, "faults.0.match: '(' is not a regular expression"),
    ({"kind": "late", "after": -1}, "faults.0.after: -1 must be an integer >= 0"),
    ({"kind": "late", "when": 3}, "faults.0.when: unknown fault field"),
])
def test_bad_fault_tables_are_one_line_errors_naming_the_key(fault: dict[str, Any], needle: str) -> None:
    doc = S.bench_doc()
    doc["faults"] = [fault]
    with pytest.raises(BenchConfigError) as info:
        parse_bench(doc, "faulty.toml")
    assert needle in str(info.value) and len(info.value.problems) == 1


def test_a_real_bench_takes_no_faults() -> None:
    doc = S.bench_doc()
    doc["bench"]["kind"] = "real"
    del doc["chip"]
    for k, inst in enumerate(doc["instruments"].values()):
        inst["address"] = f"GPIB0::{k + 1}::INSTR"
    doc["faults"] = [{"kind": "late"}]
    with pytest.raises(BenchConfigError, match="faults: only emulated benches take injected faults"):
        parse_bench(doc, "real.toml")


def test_triggers_after_match_count_and_seeded_probability() -> None:
    from labctl.sim.faults import FaultPlan

    plan = FaultPlan.of([Fault(kind="timeout", instrument="a", match="X", after=2, count=2)])
    fired = [plan.pick("a", m) is not None for m in ["X1", "X2", "X3", "Y", "X4", "X5"]]
    assert fired == [False, False, True, False, True, False]       # after 2 messages, matching, twice
    assert plan.pick("b", "X") is None                              # another instrument
    runs = []
    for _ in range(2):
        p = FaultPlan.of([Fault(kind="garbage", probability=0.3, count=0, seed=7)])
        runs.append([p.pick("m", "q?") is not None for _ in range(400)])
    assert runs[0] == runs[1] and 80 < sum(runs[0]) < 160            # seeded: the same faults every time


# -- the layer, instrument by instrument --------------------------------------------------------------------------------
@pytest.fixture
def open_bench(tmp_path: Path) -> Iterator[Any]:
    """Open the tiny bench with the given faults (a journal kept); closed afterwards."""
    opened: list[Bench] = []

    def open_(*faults: dict[str, Any]) -> Bench:
        config, digest = load_bench(S.write_bench(tmp_path / "bench.toml", list(faults)))
        bench = Bench.connect(config, digest, lock_dir=tmp_path / "locks")
        bench.emulation.bench.faults.journal = []
        opened.append(bench)
        return bench

    yield open_
    for bench in opened:
        bench.close()


def test_late_heater_reply_is_never_taken_for_the_next_one(open_bench: Any) -> None:
    """The Qontrol has no sequence numbers: a reply after the timeout would pass for the next query's. Distinct
    values on the two channels show the driver resynchronised and answered each query with its own reply."""
    noted: list[dict[str, Any]] = []
    with recoveries.listening(noted.append):
        bench = open_bench({"kind": "late", "instrument": "heaters", "match": "VALL"})
        bench.set_ring_drive(np.array([1.25, 2.5]))
        drive = bench.heaters.read_drive()
    assert drive[:2] == pytest.approx([1.25, 2.5], abs=2e-4)
    assert bench.emulation.bench.faults.fired[0]["kind"] == "late"
    assert noted and noted[0]["instrument"] == "heaters" and noted[0]["command"] == "VALL?"
    journal = bench.emulation.bench.faults.journal
    assert [e.message for e in journal[-3:]] == ["VALL?", "id?", "VALL?"]      # resync, then the query again


def test_truncated_heater_reply_does_not_prefix_the_resync_answer(open_bench: Any) -> None:
    bench = open_bench({"kind": "truncated", "instrument": "heaters", "match": "VALL"})
    bench.set_ring_drive(np.array([0.5, 1.0]))
    assert bench.heaters.read_drive()[:2] == pytest.approx([0.5, 1.0], abs=2e-4)


@pytest.mark.parametrize("kind", ["late", "timeout", "truncated"])
def test_meter_query_recovers_after_a_device_clear(open_bench: Any, kind: str) -> None:
    """GPIB semantics: the transport sends a timed-out query again after a device clear, which aborts a late reply,
    so the reading returned is the second sending's."""
    bench = open_bench({"kind": kind, "instrument": "meter", "match": "FETC"})
    meter = bench.instruments["meter"]
    first = meter.read_all_w()
    fetches = [e for e in bench.emulation.bench.faults.journal if "FETC" in e.message]
    assert len(fetches) == 2 and fetches[0].fault == kind and fetches[1].fault is None
    assert first == pytest.approx([float(v) for v in str(fetches[1].reply).split(",")])


def test_heater_module_reset_stops_every_later_drive(open_bench: Any) -> None:
    bench = open_bench({"kind": "heater_reset", "instrument": "heaters", "match": "VALL"})
    bench.set_ring_drive(np.array([1.0, 1.0]))
    with pytest.raises(InstrumentReportedError, match="powered up"):
        bench.heaters.read_drive()
    assert np.all(bench.emulation.chip.heater_drive() == 0)          # the module really reset
    with pytest.raises(InstrumentReportedError, match="reconnect before driving the heaters again"):
        bench.set_ring_drive(np.array([1.0, 1.0]))
    bench.heaters.safe_state()                                       # zeros are still accepted


def test_a_write_to_a_dropped_instrument_fails_naming_it(open_bench: Any) -> None:
    bench = open_bench()
    bench.emulation.bench.faults.add(Fault(kind="drop", instrument="laser0"))
    with pytest.raises(InstrumentConnectionError, match="laser0.*connection lost"):
        bench.lasers[0].set_power_w(1e-3)


def test_safe_state_takes_a_second_pass_over_a_link_that_came_back(open_bench: Any) -> None:
    noted: list[dict[str, Any]] = []
    bench = open_bench()
    bench.set_ring_drive(np.array([1.0, 2.0]))
    bench.emulation.bench.faults.add(Fault(kind="drop", instrument="heaters", down_messages=1))
    with recoveries.listening(noted.append):
        assert bench.make_safe() == []
    assert np.all(bench.emulation.chip.heater_drive() == 0)
    assert any("second pass" in n["action"] for n in noted)


def test_a_failed_connect_still_switches_the_lasers_off(tmp_path: Path) -> None:
    """The emulated lasers start on (as a killed session could leave them); the heaters fail while connecting,
    before the lasers were opened: they are opened anyway and switched off."""
    from labctl.bench import emulation as emulation_mod

    built: list[Any] = []
    real = emulation_mod.build_emulation
    emulation_mod.build_emulation = lambda config: built.append(real(config)) or built[-1]
    try:
        config, digest = load_bench(S.write_bench(tmp_path / "b.toml", [{"kind": "drop", "instrument": "heaters",
                                                                         "after": 3}]))
        with pytest.raises(InstrumentConnectionError):
            Bench.connect(config, digest, lock_dir=tmp_path / "locks")
    finally:
        emulation_mod.build_emulation = real
    assert not built[0].chip.laser_on().any()


# -- the matrix ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S.Lab]:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("faults")
    mp.setenv("LABCTL_LOCK_DIR", str(root / "locks"))
    yield S.make_lab(root / "lab")
    mp.undo()


@pytest.mark.parametrize("scenario", S.ci_scenarios(), ids=lambda s: s.id)
def test_scenario(scenario: S.Scenario, lab: S.Lab, tmp_path: Path) -> None:
    result = S.run_scenario(lab, scenario, tmp_path)
    assert not result.unsafe, result
    assert not result.violations, result
    assert not result.misattributed, result
    assert not result.record_problems, result
    assert result.resumed is not False, result
    if result.fired and scenario.case.expect == "recover":
        assert result.outcome == "recovered", result


# -- processes: signals and the lock, on the served bench ---------------------------------------------------------------
class Served:
    """``labctl sim serve --json`` of a bench file: its instruments on sockets and pseudo-terminals."""

    def __init__(self, bench: Path) -> None:
        import selectors

        self.proc = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--json", "--bench",
                                      str(bench)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            if not sel.select(60):
                self.stop()
                raise TimeoutError("labctl sim serve printed nothing within 60 s")
        self.addresses: dict[str, str] = json.loads(self.proc.stdout.readline())["addresses"]  # type: ignore

    def real_bench(self, path: Path) -> Path:
        doc = S.bench_doc()
        doc["bench"].update(kind="real", name="served-faults", chip_id=f"emulated seed {doc['chip']['seed']}")
        del doc["chip"]
        for name, inst in doc["instruments"].items():
            inst["address"] = self.addresses[name]
        path.write_text(tomli_w.dumps(doc))
        return path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def served(lab: S.Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    root = tmp_path_factory.mktemp("served")
    server = Served(S.write_bench(root / "emulated.toml"))
    try:
        yield server, server.real_bench(root / "real.toml")
    finally:
        server.stop()


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LABCTL_DATA=str(tmp / "runs"), LABCTL_LOCK_DIR=str(tmp / "locks"), CI="1")
    return env


TRAIN = ["train", "--method", "photonic-dfa", "--path", "stack", "--dataset", "digits", "--hidden", "16",
         "--epochs", "200", "--n-train", "48", "--n-test", "16", "--checkpoint-s", "1", "--checkpoint-every", "1"]


def _record(tmp: Path) -> dict[str, Any]:
    runs = sorted((tmp / "runs").glob("train-*"))
    try:
        return json.loads((runs[-1] / "run.json").read_text()) if runs else {}
    except (OSError, ValueError):
        return {}


def _wait_for(pred: Any, timeout_s: float = 90.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_a_second_process_is_refused_and_sigterm_leaves_the_served_bench_safe(
        served: tuple[Served, Path], lab: S.Lab, tmp_path: Path) -> None:
    """Two processes on one real-bench instrument set (the served bench, reached over sockets and pseudo-terminals
    as real instruments are): the second is refused by the bench lock in one line; SIGTERM (twice: stop now) ends
    the first with its record saying so, and the instruments themselves read back heaters at 0 V, lasers off."""
    _, real = served
    env = _env(tmp_path)
    argv = [sys.executable, "-m", "labctl", *TRAIN, "--bench", str(real), "--calibration", str(lab.calibration)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: bool(_record(tmp_path).get("instruments")))
        second = subprocess.run([sys.executable, "-m", "labctl", "resonances", "--bench", str(real)], cwd=REPO,
                                env=env, text=True, capture_output=True, timeout=60)
        assert proc.poll() is None, proc.communicate()
        assert second.returncode == 4, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
        assert str(proc.pid) in second.stderr                      # the holder is named
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "bench safe (heaters 0, lasers off)" in err.strip().splitlines()[-1]
    assert _record(tmp_path)["status"] in ("paused", "interrupted")
    config, digest = load_bench(real)                # read back from the instruments themselves
    bench = Bench.connect(config, digest, lock_dir=tmp_path / "locks")
    try:
        assert np.all(bench.heaters.read_drive() == 0)
        assert not any(bench.instruments[name].output_enabled for name in config.wiring.lasers)
    finally:
        bench.close()


def test_sigkill_during_photonic_training_then_resume_loses_nothing(lab: S.Lab, tmp_path: Path) -> None:
    """SIGKILL in the middle of photonic training (emulated bench): run.json and data.h5 stay readable, and --resume
    finishes with every mini-batch exactly once (nothing lost beyond the last checkpoint)."""
    env = _env(tmp_path)
    bench = S.write_bench(tmp_path / "bench.toml")
    fast = [("fast" if a == "stack" else a) for a in TRAIN]                 # the fast path: a quicker epoch
    argv = [sys.executable, "-m", "labctl", *fast, "--bench", str(bench), "--calibration", str(lab.calibration)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(_record(tmp_path).get("history") or []) >= 1
                  and bool(_record(tmp_path).get("checkpoints")))
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    killed = _record(tmp_path)
    assert killed["status"] == "running"                 # killed: nobody could say otherwise
    run = sorted((tmp_path / "runs").glob("train-*"))[-1]
    target = len(killed["history"]) + 1
    final = subprocess.run([sys.executable, "-m", "labctl", "train", "--resume", str(run), "--epochs", str(target),
                            "--quiet"], cwd=REPO, env=env, text=True, capture_output=True, timeout=180)
    assert final.returncode == 0, final.stderr
    rec = _record(tmp_path)
    assert rec["status"] == "finished" and [h["epoch"] for h in rec["history"]] == list(range(1, target + 1))
    assert rec["resumes"][-1]["previous_status"] == "running"
    import h5py

    with h5py.File(run / "data.h5", "r") as h5:
        steps = h5["training/batches/step"][()]
        assert np.array_equal(steps, np.arange(1, steps.size + 1))     # no mini-batch lost or repeated
        assert steps.size == target                   # 48 samples: one mini-batch per epoch (default batch size)


def test_late_replies_on_the_served_bench_never_shift_the_answers(tmp_path: Path) -> None:
    """The served tier, as a LAN instrument on a raw SCPI socket and a Qontrol on a serial line: a late reply has
    no device clear to stop it. Each driver resynchronises on a known answer, so the next queries get their own
    replies (before the fix the meter answered every later query with the previous one's reply)."""
    emulated = S.write_bench(tmp_path / "emulated.toml", [
        {"kind": "late", "instrument": "meter", "match": r"ATIM\?"},          # while connecting
        {"kind": "late", "instrument": "heaters", "match": "VALL", "after": 0}])
    server = Served(emulated)
    try:
        real = server.real_bench(tmp_path / "real.toml")
        doc = tomllib.loads(real.read_text())
        doc["instruments"]["meter"]["options"] = {"timeout_s": 0.3}       # a short wait for the lost reply
        real.write_text(tomli_w.dumps(doc))
        config, digest = load_bench(real)
        noted: list[dict[str, Any]] = []
        with recoveries.listening(noted.append):
            bench = Bench.connect(config, digest, lock_dir=tmp_path / "locks")
            try:
                meter = bench.instruments["meter"]
                assert meter.read_all_w().shape == (8,)                       # its own reply: 8 values
                assert meter.port(2).averaging_time_s > 0
                bench.set_ring_drive(np.array([0.75, 1.5]))
                assert bench.heaters.read_drive()[:2] == pytest.approx([0.75, 1.5], abs=2e-4)
                assert bench.heaters.read_drive()[:2] == pytest.approx([0.75, 1.5], abs=2e-4)
            finally:
                bench.close()
        assert {n["instrument"] for n in noted} >= {"meter", "heaters"}
    finally:
        server.stop()


def test_ctrl_c_inside_a_transaction_reaches_the_handler_it_displaced(open_bench: Any) -> None:
    """A Ctrl-C that lands mid-transaction is held until the transaction ends and then goes to the handler in
    place before (the run engine's pauses at the next checkpoint); it used to become a KeyboardInterrupt that
    stopped the run at once, so one Ctrl-C during calibration stopped instead of pausing."""
    bench = open_bench()
    transport = bench.instruments["meter"].transport
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        with transport.transaction():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert got == []                      # held while the transaction runs
        assert got == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
