"""The fault scenario matrix: every injected fault at several points of every procedure, run through the command line
on a tiny emulated bench, and what each scenario is judged on.

Used by ``tests/reliability/test_faults.py`` (one parametrized test per scenario) and ``bench/reliability.py`` (the
whole matrix, counted). A scenario passes when, at its end:

* the bench is safe (heaters at 0 V, every laser off) by the emulator's truth, or the record names the instrument
  that could not be made safe (a link that never came back);
* no command beyond the bench limits reached any instrument (every message the instruments received, checked
  against the bench file's limits: per-heater voltage and power, total heater power, laser power);
* no reply was attributed to the wrong command (every reply a driver took as the answer to a command is the reply
  the instrument gave to that command's latest sending, by the fault layer's journal);
* ``run.json`` loads and says what happened: ``finished`` (with the recoveries listed when a fault was survived),
  or ``failed``/``interrupted`` with an error naming the instrument (or the full disk); ``data.h5`` opens;
* a resumable run that stopped resumes to the end on a healthy bench (``--resume``).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tomli_w

SMALL = {"banks": 1, "rings": 2}
CAL = "{cal}"

#: Procedure -> command line (``{cal}``: the calibration made once by the fixture).
PROCEDURES: dict[str, list[str]] = {
    "resonances": ["resonances"],
    "calibrate": ["calibrate", "--n-configs", "2", "--n-levels", "8", "--n-drift-references", "1"],
    "verify": ["verify", "--calibration", CAL, "--n", "2"],
    "drift-check": ["drift-check", "--calibration", CAL],
    "train-stack": ["train", "--method", "photonic-dfa", "--path", "stack", "--calibration", CAL, "--dataset",
                    "digits", "--hidden", "16", "--epochs", "1", "--n-train", "16", "--n-test", "16"],
    "train-fast": ["train", "--method", "photonic-dfa", "--path", "fast", "--calibration", CAL, "--dataset",
                   "digits", "--hidden", "16", "--epochs", "1", "--n-train", "64", "--n-test", "32"],
}
RESUMABLE = {"train-stack", "train-fast"}


@dataclass(frozen=True)
class FaultCase:
    """A fault as a ``[[faults]]`` entry (``after`` is set per point) and the outcome it may have."""

    name: str
    fault: dict[str, Any]
    #: "recover": the run finishes and lists the recovery; "fail": the run stops safely naming the instrument;
    #: "any": either (the fault may land where it does no harm, or be noticed only by some procedures).
    expect: str = "any"

    #: What the error of a run this fault stopped must mention (default: the instrument).
    named: str | None = None

    @property
    def instrument(self) -> str:
        return str(self.fault.get("instrument", "heaters"))

    @property
    def mention(self) -> str:
        if self.named is not None:
            return self.named
        return "No space left" if self.fault["kind"] == "disk_full" else self.instrument


#: The fault cases. The disk-full case is injected at the data writer, not at an instrument ("disk").
FAULTS: list[FaultCase] = [
    FaultCase("heaters-timeout", {"kind": "timeout", "instrument": "heaters"}, "recover"),
    FaultCase("heaters-late", {"kind": "late", "instrument": "heaters"}, "recover"),
    FaultCase("heaters-garbage", {"kind": "garbage", "instrument": "heaters"}, "recover"),
    FaultCase("heaters-truncated", {"kind": "truncated", "instrument": "heaters"}, "recover"),
    FaultCase("heaters-slow", {"kind": "slow", "instrument": "heaters", "delay_s": 0.02}, "any"),
    FaultCase("heaters-drop-back", {"kind": "drop", "instrument": "heaters", "down_messages": 1}, "fail"),
    FaultCase("heaters-drop-gone", {"kind": "drop", "instrument": "heaters"}, "fail"),
    FaultCase("heaters-error", {"kind": "error_queue", "instrument": "heaters"}, "any"),
    FaultCase("heaters-reset", {"kind": "heater_reset", "instrument": "heaters"}, "fail"),
    FaultCase("meter-timeout", {"kind": "timeout", "instrument": "meter"}, "any"),
    FaultCase("meter-late", {"kind": "late", "instrument": "meter"}, "any"),
    FaultCase("meter-garbage", {"kind": "garbage", "instrument": "meter"}, "any"),
    FaultCase("meter-truncated", {"kind": "truncated", "instrument": "meter"}, "any"),
    FaultCase("meter-drop-back", {"kind": "drop", "instrument": "meter", "down_messages": 1}, "any"),
    FaultCase("meter-error", {"kind": "error_queue", "instrument": "meter"}, "any"),
    # a stuck reading cannot be told from a chip that does not respond: a run it stops names what it measured
    FaultCase("meter-stuck", {"kind": "stuck", "instrument": "meter", "match": r"\?"}, "any", named=""),
    FaultCase("meter-nan", {"kind": "nan", "instrument": "meter", "match": r"\?"}, "any"),
    FaultCase("meter-overrange", {"kind": "overrange", "instrument": "meter", "match": r"\?"}, "any"),
    FaultCase("laser-timeout", {"kind": "timeout", "instrument": "laser0"}, "any"),
    FaultCase("laser-late", {"kind": "late", "instrument": "laser0"}, "any"),
    FaultCase("laser-off", {"kind": "laser_off", "instrument": "laser0"}, "any", named="laser"),
    FaultCase("laser-drop-gone", {"kind": "drop", "instrument": "laser1"}, "fail"),
    FaultCase("disk-full", {"kind": "disk_full"}, "fail"),
]
FAULTS_BY_NAME = {case.name: case for case in FAULTS}

#: Where a fault fires: after this fraction of the messages the procedure sends to the instrument when healthy.
POINTS = (0.15, 0.6, 0.95)
#: Procedures that run long: each fault at the middle point only.
ONE_POINT = {"calibrate", "train-stack"}
#: Faults that the expensive procedures skip (covered elsewhere in the matrix at the same seam).
HEAVY_SKIP = {"heaters-slow", "meter-overrange", "meter-drop-back", "laser-late", "heaters-error",
              "meter-error", "meter-stuck", "laser-timeout"}


@dataclass(frozen=True)
class Scenario:
    procedure: str
    case: FaultCase
    point: float

    @property
    def id(self) -> str:
        return f"{self.procedure}-{self.case.name}-{int(round(self.point * 100))}"


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for procedure in PROCEDURES:
        points = (0.6,) if procedure in ONE_POINT else POINTS
        for case in FAULTS:
            if procedure in ONE_POINT and case.name in HEAVY_SKIP:
                continue
            for point in points:
                out.append(Scenario(procedure, case, point))
    return out


#: The faults the expensive procedures get in CI.
CI_HEAVY = {"heaters-late", "meter-timeout", "heaters-reset", "disk-full"}


def ci_scenarios() -> list[Scenario]:
    """The CI share of the matrix: every fault once per cheap procedure, the points taking turns (so each point
    of each procedure is visited by a third of the faults), and CI_HEAVY at the middle of the expensive ones."""
    out: list[Scenario] = []
    for p, procedure in enumerate(PROCEDURES):
        for i, case in enumerate(FAULTS):
            if procedure in ONE_POINT:
                if case.name in CI_HEAVY:
                    out.append(Scenario(procedure, case, 0.6))
            else:
                out.append(Scenario(procedure, case, POINTS[(i + p) % len(POINTS)]))
    return out


# -- the bench file ----------------------------------------------------------------------------------------------------
def bench_doc(seed: int = 3) -> dict[str, Any]:
    """A 1 x 2 emulated bench: a Qontrol, one N777xC per WDM channel, an N7745A on the bank's ports."""
    n_banks, n_rings = SMALL["banks"], SMALL["rings"]
    lasers = [f"laser{k}" for k in range(n_rings)]
    return {
        "bench": {"name": f"emulated-faults-{seed}", "kind": "emulated", "settle_time_s": 0.001},
        "chip": {"seed": seed, "spec": {"layout": {"n_banks": n_banks, "n_rings": n_rings},
                                        "lasers": {"n_channels": n_rings}}},
        "instruments": {"heaters": {"driver": "qontrol"}, **{name: {"driver": "keysight_n777xc"} for name in lasers},
                        "meter": {"driver": "keysight_n774xa"}},
        "wiring": {"banks": n_banks, "rings": n_rings, "lasers": lasers,
                   "wavelengths_m": [1.55e-6 + 1e-9 * k for k in range(n_rings)], "inputs": "laser_power",
                   "detectors": [{"instrument": "meter", "through_port": 2 * b, "drop_port": 2 * b + 1}
                                 for b in range(n_banks)],
                   "heaters": {"instrument": "heaters", "mode": "voltage",
                               "channels": list(range(n_banks * n_rings))}},
        "limits": {"heater_max_voltage_v": 7.0, "heater_max_power_w": 0.04, "total_heater_power_w": 0.6,
                   "heater_min_resistance_ohm": 900.0, "heater_max_resistance_ohm": 1200.0,
                   "laser_max_power_w": 0.01},
    }


def write_bench(path: Path, faults: list[dict[str, Any]] | None = None) -> Path:
    doc = bench_doc()
    if faults:
        doc["faults"] = faults
    path.write_text(tomli_w.dumps(doc))
    return path


# -- observing a run ---------------------------------------------------------------------------------------------------
@dataclass
class Observation:
    """What the instruments received and what the drivers took as answers, for one run."""

    emulations: list[Any] = field(default_factory=list)
    #: (instrument, command, reply as the driver took it, journal length when it was taken)
    answers: list[tuple[str, str, Any, int]] = field(default_factory=list)
    #: Rows appended to the run's data file.
    appended: int = 0

    def journal(self) -> list[Any]:
        return [entry for emu in self.emulations for entry in (emu.bench.faults.journal or [])]


@contextlib.contextmanager
def observed(disk_full_after: int | None = None) -> Iterator[Observation]:
    """Capture every emulation the run builds (with a journal), spy on the replies drivers accept, and (disk full)
    make the run's data file fail with ENOSPC after ``disk_full_after`` appended rows."""
    from labctl.bench import emulation as emulation_mod
    from labctl.drivers import qontrol, transport
    from labctl.runs import datafile

    obs = Observation()
    real_build = emulation_mod.build_emulation
    real_query = transport.BaseTransport.query
    real_exchange = qontrol.Qontrol._exchange
    real_append = datafile.DataFile.append

    def build(config: Any) -> Any:
        emu = real_build(config)
        emu.bench.faults.journal = []
        obs.emulations.append(emu)
        return emu

    def journal_len() -> int:
        return sum(len(emu.bench.faults.journal or []) for emu in obs.emulations)

    def query(self: Any, command: str, **kw: Any) -> str:
        reply = real_query(self, command, **kw)
        obs.answers.append((self.name, command, reply, journal_len()))
        return reply

    def exchange(self: Any, command: str, n_lines: int | None) -> list[str]:
        lines = real_exchange(self, command, n_lines)
        obs.answers.append((self.name, command, list(lines), journal_len()))
        return lines

    def append(self: Any, stream: str, row: Any) -> None:
        obs.appended += 1
        if disk_full_after is not None and obs.appended > disk_full_after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real_append(self, stream, row)

    emulation_mod.build_emulation = build
    transport.BaseTransport.query = query
    qontrol.Qontrol._exchange = exchange
    datafile.DataFile.append = append
    try:
        yield obs
    finally:
        emulation_mod.build_emulation = real_build
        transport.BaseTransport.query = real_query
        qontrol.Qontrol._exchange = real_exchange
        datafile.DataFile.append = real_append


# -- judging -----------------------------------------------------------------------------------------------------------
_QONTROL_SET = re.compile(r"^(VVEC|V)(\d+)=(.*)$", re.IGNORECASE)
_LASER_POWER = re.compile(r"^:?SOUR\d*:POW(?:er)?(?::LEV(?:el)?(?::IMM(?:ediate)?(?::AMPL(?:itude)?)?)?)?\s+(\S+)",
                          re.IGNORECASE)


def limit_violations(journal: list[Any], limits: dict[str, Any], wired: list[int]) -> list[str]:
    """Messages the instruments received that go beyond the bench limits (heater voltage, per-heater and total
    power at the worst-case resistance, unwired outputs, laser power in W or dBm)."""
    out: list[str] = []
    r_min = float(limits["heater_min_resistance_ohm"])
    v_max = min(float(limits["heater_max_voltage_v"]), math.sqrt(float(limits["heater_max_power_w"]) * r_min))
    state: dict[int, float] = {}
    laser_unit_watt: dict[str, bool] = {}
    for entry in journal:
        msg = entry.message
        if entry.instrument == "heaters":
            m = _QONTROL_SET.match(msg)
            if m is None:
                continue
            start = int(m.group(2))
            values = [float(v) for v in m.group(3).split(",")] if m.group(1).upper() == "VVEC" else [float(m.group(3))]
            for k, v in enumerate(values):
                ch = start + k
                if v != 0.0 and ch not in wired:
                    out.append(f"heaters: {msg!r} drives unwired output {ch}")
                if not 0.0 <= v <= v_max * (1 + 1e-9):
                    out.append(f"heaters: {msg!r} beyond {v_max:.4g} V on channel {ch}")
                state[ch] = v
            total = sum(v * v / r_min for v in state.values())
            if total > float(limits["total_heater_power_w"]) * (1 + 1e-9):
                out.append(f"heaters: {msg!r} brings the total to {total:.4g} W")
        elif entry.instrument.startswith("laser"):
            upper = msg.upper()
            if ":POW:UNIT" in upper and not upper.rstrip().endswith("?"):
                laser_unit_watt[entry.instrument] = upper.split()[-1] in ("1", "W")
                continue
            m = _LASER_POWER.match(msg)
            if m is None or msg.rstrip().endswith("?"):
                continue
            text = m.group(1).upper()
            value = float(re.sub(r"(DBM|MW|UW|NW|W)$", "", text))
            if text.endswith("DBM") or (not text.endswith("W") and not laser_unit_watt.get(entry.instrument)):
                watts = 1e-3 * 10 ** (value / 10)
            else:
                scale = {"MW": 1e-3, "UW": 1e-6, "NW": 1e-9}.get(text[-2:], 1.0)
                watts = value * scale
            if watts > float(limits["laser_max_power_w"]) * (1 + 1e-9):
                out.append(f"{entry.instrument}: {msg!r} asks {watts:.4g} W")
    return out


def _clean(text: str) -> str:
    return text.strip().lstrip("\x06\x00").strip()


def misattributed(obs: Observation) -> list[str]:
    """Replies a driver took as the answer to a command that the instrument did not give to that command's latest
    sending (a late reply passed off as the next one's, a line out of step, a cut-short reply)."""
    journal = obs.journal()
    out: list[str] = []
    for instrument, command, reply, upto in obs.answers:
        key = command.strip()
        latest = next((e for e in reversed(journal[:upto]) if e.instrument == instrument and e.message == key),
                      None)
        if latest is None:
            continue
        given = latest.reply
        if isinstance(given, bytes):
            continue
        if latest.fault in ("timeout", "late", "truncated") or given is None:
            out.append(f"{instrument}: {command!r} took {reply!r}, but its latest sending got no reply in time")
            continue
        if isinstance(reply, list):
            expected = [_clean(line) for line in given.split("\n") if _clean(line)]
            got = [_clean(line) for line in reply if _clean(line)]
        else:
            expected, got = _clean(given), _clean(reply)
        if expected != got:
            out.append(f"{instrument}: {command!r} took {reply!r}, the instrument answered {given!r}")
    return out


@dataclass
class Result:
    scenario: str
    case: str
    fired: bool
    status: str | None
    outcome: str                  # recovered | finished | failed-safe | ...
    unsafe: list[str]
    violations: list[str]
    misattributed: list[str]
    record_problems: list[str]
    resumed: bool | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not (self.unsafe or self.violations or self.misattributed or self.record_problems) \
            and self.resumed is not False


def _latest_run(runs: Path, before: set[Path]) -> Path | None:
    new = [p for p in runs.iterdir() if p.is_dir() and p not in before] if runs.is_dir() else []
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


#: Exceptions that escaped the command line (the user would have seen a traceback), and the status they get here.
UNCAUGHT: list[str] = []
UNCAUGHT_STATUS = 99


def run_cli(argv: list[str]) -> int:
    """``labctl <argv>`` in this process, its output kept out of the way; the exit status."""
    import io

    from labctl.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return int(main(argv))
        except SystemExit as exc:
            return int(exc.code or 0)
        except Exception as exc:  # noqa: BLE001 - a traceback the user would see: the scenario reports it
            UNCAUGHT.append(f"{type(exc).__name__}: {exc}")
            return UNCAUGHT_STATUS


@dataclass
class Lab:
    """A working folder with a healthy bench, its calibration, and per-instrument message counts per procedure."""

    root: Path
    calibration: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def argv(self, procedure: str) -> list[str]:
        return [a.replace(CAL, str(self.calibration)) for a in PROCEDURES[procedure]]


def make_lab(root: Path) -> Lab:
    """Calibrate the healthy bench once and count, per procedure, the messages each instrument gets and the data
    rows written (the scale of the fault points)."""
    root.mkdir(parents=True, exist_ok=True)
    bench = write_bench(root / "healthy.toml")
    calibration = root / "calibration.json"
    code = run_cli(["calibrate", "--bench", str(bench), "--quiet", "--out", str(calibration), "--force",
                    "--n-configs", "4", "--data-dir", str(root / "setup")])
    if code != 0:
        raise RuntimeError(f"calibration of the healthy bench failed (exit {code})")
    lab = Lab(root, calibration)
    for procedure in PROCEDURES:
        with observed() as obs:
            code = run_cli([*lab.argv(procedure), "--bench", str(bench), "--quiet", "--data-dir",
                            str(root / "setup")])
        if code != 0:
            raise RuntimeError(f"{procedure} on the healthy bench failed (exit {code})")
        counts: dict[str, int] = {}
        for entry in obs.journal():
            counts[entry.instrument] = counts.get(entry.instrument, 0) + 1
        counts["disk"] = obs.appended
        lab.counts[procedure] = counts
    return lab


def run_scenario(lab: Lab, scenario: Scenario, work: Path) -> Result:
    """Run one scenario and judge it (see the module docstring)."""
    case, procedure = scenario.case, scenario.procedure
    work.mkdir(parents=True, exist_ok=True)
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    total = lab.counts[procedure].get(case.instrument if case.fault["kind"] != "disk_full" else "disk", 0)
    after = int(scenario.point * total)
    disk_after = None
    faults: list[dict[str, Any]] = []
    if case.fault["kind"] == "disk_full":
        disk_after = after
    else:
        faults.append({**copy.deepcopy(case.fault), "after": after})
    bench = write_bench(work / "bench.toml", faults)
    before = set(runs.iterdir())
    uncaught = len(UNCAUGHT)
    with observed(disk_full_after=disk_after) as obs:
        code = run_cli([*lab.argv(procedure), "--bench", str(bench), "--quiet", "--data-dir", str(runs)])
    doc = tomllib.loads(bench.read_text())
    run = _latest_run(runs, before)
    result = judge(scenario, obs, run, doc, code)
    result.record_problems.extend(f"traceback: {text[:200]}" for text in UNCAUGHT[uncaught:])
    if run is not None and procedure in RESUMABLE and result.status in ("failed", "interrupted", "paused"):
        healthy = write_bench(work / "healthy.toml")
        resume = run_cli(["train", "--resume", str(run), "--bench", str(healthy), "--force", "--quiet"])
        rec = _load(run)
        result.resumed = resume == 0 and rec is not None and rec.get("status") == "finished" \
            and len(rec.get("history") or []) == 1
    return result


def _load(run: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return None


def judge(scenario: Scenario, obs: Observation, run: Path | None, doc: dict[str, Any], code: int) -> Result:
    case = scenario.case
    fired = any(emu.bench.faults.fired for emu in obs.emulations) if case.fault["kind"] != "disk_full" \
        else code != 0
    record_problems: list[str] = []
    rec = None if run is None else _load(run)
    if rec is None:
        record_problems.append("no readable run.json")
        status = None
    else:
        status = rec.get("status")
        try:
            with h5py.File(run / "data.h5", "r"):   # type: ignore[operator]
                pass
        except OSError as exc:
            record_problems.append(f"data.h5 unreadable: {exc}")
        if status == "running":
            record_problems.append("run.json still says running")
        if status in ("failed", "interrupted"):
            message = str((rec.get("error") or {}).get("message", ""))
            named = case.mention
            if named not in message and not rec.get("safe_state_failures"):
                record_problems.append(f"error does not name {named!r}: {message[:200]!r}")
        snapshots = rec.get("instruments") or {}
        unread = [name for when in ("start", "end") for name, entry in (snapshots.get(when) or {}).items()
                  if isinstance(entry, dict) and entry.get("settings_error")]
        said = rec.get("recoveries") or rec.get("safe_state_failures") or rec.get("instrument_errors") or unread
        if status == "finished" and fired and case.expect == "recover" and not rec.get("recoveries"):
            record_problems.append("finished after a fault without listing a recovery")
        # a fault that fired after the run's own end-of-run safe state (while the bench closed) is not in the
        # record's faults_injected: only the end state can show it
        during = bool(rec.get("faults_injected")) or case.fault["kind"] == "disk_full"
        if status == "finished" and fired and during and case.expect == "fail" and not said:
            record_problems.append("finished after a fault it could not survive, and the record says nothing")
    unsafe: list[str] = []
    failures = " ".join((rec or {}).get("safe_state_failures") or [])
    for emu in obs.emulations:
        chip = emu.chip
        drive = np.asarray(chip.heater_drive())
        if np.any(drive != 0) and "heaters" not in failures:
            unsafe.append(f"heaters at {drive.tolist()}")
        on = np.asarray(chip.laser_on())
        for k in np.flatnonzero(on):
            if f"laser{k}" not in failures:
                unsafe.append(f"laser{k} on")
    wired = list(doc["wiring"]["heaters"]["channels"])
    violations = limit_violations(obs.journal(), doc["limits"], wired)
    wrong = misattributed(obs)
    if status == "finished":
        outcome = "recovered" if (rec or {}).get("recoveries") else "finished"
    elif status in ("failed", "interrupted"):
        outcome = "failed-safe" if not unsafe else "failed-UNSAFE"
    else:
        outcome = f"status {status}"
    return Result(scenario.id, case.name, fired, status, outcome, unsafe, violations, wrong, record_problems,
                  detail=str(((rec or {}).get("error") or {}).get("message", ""))[:300])
