"""The run engine: executes a plan over a bench session and owns everything a procedure should not repeat.

Order of work, so nothing touches an instrument before everything that can be checked has been checked:

1. parameter values checked against their declarations (range, type, choices);
2. for ``--resume``: the run folder, its procedure, its parameters (only those declared ``on_resume`` may change)
   and its bench file hash;
3. the plan's preflight (output paths, input files; existing artifacts are never overwritten without ``--force``);
4. ``--dry-check`` stops here with the plan's operation counts and limit checks;
5. the run folder (``run.json`` + ``data.h5``), then the bench, the instruments' start snapshot, the plan;
6. on every exit (finished, failed, paused, stopped by Ctrl-C or SIGTERM): the end snapshot, the bench's safe
   state (heaters 0, lasers off), the run's outcome and times in ``run.json``.

Ctrl-C (or SIGTERM) once: a resumable plan pauses at its next checkpoint; a plan without checkpoints stops at once.
Twice: stop at once. Either way the bench is made safe, and one line says so and how to resume or rerun
(:class:`RunStopped`; the command line turns it into exit status 130 without a traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from labctl.drivers import recoveries
from labctl.drivers.errors import InstrumentError
from labctl.runs import plan as P
from labctl.runs.datafile import DATA_FILE, DataFile
from labctl.runs.progress import Bars, bars_enabled
from labctl.runs.record import Run, _now, sha256_file
from labctl.runs.record import data_dir as resolve_data_dir

log = logging.getLogger(__name__)

#: Packages whose versions every run records.
KEY_PACKAGES = ("labctl", "numpy", "scipy", "numba", "h5py", "pyvisa", "pyvisa-py", "pyvisa-sim", "pyserial",
                "pydantic", "matplotlib", "tqdm", "scikit-learn", "mlxtend")
SAFE_LINE = "bench safe (heaters 0, lasers off)"
#: Projections of shorter work are recorded but not printed.
PROJECT_ABOVE_S = 30.0


class RunStopped(Exception):
    """The run paused or was stopped; ``line`` is the one line the user sees (exit status 130)."""

    def __init__(self, line: str, status: str, run_dir: Path | None) -> None:
        super().__init__(line)
        self.line = line
        self.status = status
        self.run_dir = run_dir


class _PauseNow(Exception):
    """Raised into the plan at a checkpoint when a pause was asked for."""


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class Context:
    """What a plan body sees: its values, the session (None without a bench), the run folder, and helpers."""

    engine: RunEngine
    plan: P.Plan
    values: dict[str, Any]
    run: Run | None = None
    data: DataFile | None = None
    bench: Any = None
    session: Any = None
    bench_path: Path | None = None
    #: The checkpoint a resumed run continues from (a labctl.runs.record.Checkpoint), else None.
    resume: Any = None
    prefix: str = ""

    @property
    def run_dir(self) -> Path:
        assert self.run is not None
        return self.run.path

    @property
    def force(self) -> bool:
        return self.engine.force

    def stream(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def within(self, prefix: str, gen: Iterator[P.Message]) -> Any:
        """Run a plan composed into this one (``yield from ctx.within("calibrate", body)``): its data streams and
        arrays go under ``prefix``; returns its value."""
        outer = self.prefix
        reply: Any = None
        while True:
            self.prefix = f"{outer}{prefix}/"
            try:
                msg = gen.send(reply)  # type: ignore[attr-defined]
            except StopIteration as stop:
                return stop.value
            finally:
                self.prefix = outer
            if isinstance(msg, P.Data):
                msg = P.Data(f"{prefix}/{msg.stream}", msg.row)
            elif isinstance(msg, P.Array):
                msg = P.Array(f"{prefix}/{msg.name}", msg.value, msg.attrs)
            reply = yield msg

    def progress(self, step: str, done: int, total: int | None) -> None:
        """Progress of a long call that is not a generator (``calibrate(..., progress=ctx.progress)``)."""
        self.engine.bars.update(step, done, total)

    def say(self, line: str) -> None:
        self.engine.say(line)

    def emit(self, stream: str, **row: Any) -> None:
        """A row of raw data from inside a long call (the session's data tap); appended at once."""
        if self.data is not None:
            self.data.append(self.stream(stream), row)


@dataclass
class Outcome:
    status: str
    result: dict[str, Any]
    run_dir: Path | None
    record: dict[str, Any] = field(default_factory=dict)


class RunEngine:
    """Runs plans; one engine per command invocation."""

    def __init__(self, *, data_dir: str | os.PathLike[str] | None = None, bench: str | os.PathLike[str] | None = None,
                 lock_dir: Path | None = None, force: bool = False, quiet: bool = False,
                 command: list[str] | None = None, echo: Callable[[str], None] | None = None,
                 bars: Bars | None = None) -> None:
        self.root = resolve_data_dir(data_dir)
        self.bench_arg = None if bench is None else Path(bench)
        self.lock_dir = lock_dir
        self.force = force
        self.quiet = quiet
        self.command = list(command) if command is not None else ["labctl", *sys.argv[1:]]
        self._echo = echo
        self.bars = bars if bars is not None else Bars(bars_enabled(quiet))
        self._signals = 0
        self._pause_requested = False
        self._stopping = False
        self._resumable = False
        self._last_checkpoint = 0.0

    # -- output ---------------------------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        if self._echo is not None:
            self._echo(line)
        elif not self.quiet:
            self.bars.write(line)

    # -- checks before anything is touched ---------------------------------------------------------------------------
    def prepare(self, plan: P.Plan, given: dict[str, Any], resume: str | os.PathLike[str] | None = None
                ) -> tuple[dict[str, Any], Run | None]:
        """Checked values (and the run to resume); raises ParamError / ValueError before any I/O on instruments."""
        if resume is None:
            return plan.check(given), None
        if not plan.resumable:
            raise P.ParamError(f"--resume: {plan.name} runs cannot be resumed (the plan has no checkpoints)")
        from labctl.runs.record import Checkpoint, RunRecordError

        try:
            run = Run.open(resume)
            latest = run.latest_checkpoint_path()
            if latest is not None:
                Checkpoint.load(latest)          # a damaged checkpoint is refused before anything starts
        except (FileNotFoundError, RunRecordError, ValueError) as exc:
            raise P.ParamError(f"--resume: {exc}") from None
        procedure = run.record.get("procedure")
        if procedure != plan.name:
            raise P.ParamError(f"--resume: {resume} is a {procedure or 'legacy'} run, not a {plan.name} run")
        recorded = dict(run.record.get("params") or {})
        try:
            values = plan.check({k: v for k, v in recorded.items() if k in {p.name for p in plan.params}})
        except P.ParamError as exc:       # the record was edited or damaged: say where the value came from
            raise P.ParamError(f"--resume: {run.path / 'run.json'}: params: {exc}") from None
        for name, value in given.items():
            p = plan.param(name)
            new = p.check(value)
            if new != values.get(name) and not p.on_resume:
                changeable = [q.option for q in plan.params if q.on_resume]
                raise P.ParamError(f"{p.option}: the run was started with {values.get(name)!r}; a resumed run "
                                   f"keeps its parameters (only {', '.join(changeable) or 'none'} may change)")
            values[name] = new
        bench = (run.record.get("bench") or {})
        if self.bench_arg is None and bench.get("path"):
            self.bench_arg = Path(bench["path"])
        if bench.get("sha256") and self.bench_arg is not None and self.bench_arg.is_file():
            now = sha256_file(self.bench_arg)
            if now != bench["sha256"] and not self.force:
                raise P.ParamError(f"--bench: {self.bench_arg} changed since the run started (sha256 "
                                   f"{bench['sha256'][:12]}..., now {now[:12]}...); --force to resume anyway")
        return values, run

    def dry_check(self, plan: P.Plan, given: dict[str, Any], resume: str | os.PathLike[str] | None = None
                  ) -> dict[str, Any]:
        values, run = self.prepare(plan, given, resume)
        ctx = Context(engine=self, plan=plan, values=values, bench_path=self.bench_arg)
        if plan.preflight is not None:
            plan.preflight(ctx)
        if plan.dry_check is None:
            return {"procedure": plan.name, "lines": ["no dry check for this procedure"], "violations": []}
        out = plan.dry_check(ctx)
        out.setdefault("procedure", plan.name)
        out.setdefault("violations", [])
        return out

    # -- the run -------------------------------------------------------------------------------------------------------
    def run(self, plan: P.Plan, given: dict[str, Any], *, resume: str | os.PathLike[str] | None = None) -> Outcome:
        values, old = self.prepare(plan, given, resume)
        if plan.bench_needed(values):
            from labctl.bench.config import load_bench

            load_bench(self.bench_arg)       # a bench file that cannot open is refused before a run folder exists
        ctx = Context(engine=self, plan=plan, values=values, bench_path=self.bench_arg)
        if old is not None:
            ctx.run = old
        if plan.preflight is not None:
            plan.preflight(ctx)
        self._resumable = plan.resumable
        with self._signals_handled():
            return self._execute(ctx, old is not None)

    def _start_record(self, ctx: Context, resumed: bool) -> None:
        plan, values = ctx.plan, ctx.values
        wall = time.time()
        if resumed:
            run = ctx.run
            assert run is not None
            ckpt_path = run.latest_checkpoint_path()
            from labctl.runs.record import Checkpoint

            ctx.resume = Checkpoint.load(ckpt_path) if ckpt_path is not None else None
            run.record["resumes"].append({"time": _now(), "previous_status": run.status,
                                          "checkpoint": None if ckpt_path is None else ckpt_path.name,
                                          "command": shlex.join(self.command), "params": P.jsonable_params(values)})
            run.record.update(status="running", error=None, params=P.jsonable_params(values))
            ctx.data = DataFile(run.path / DATA_FILE, "a")
            rows = (ctx.resume.meta.get("data_rows") if ctx.resume is not None else {}) or {}
            for stream in list(ctx.data.rows):
                ctx.data.truncate(stream, int(rows.get(stream, 0)))
        else:
            run = Run.create(plan.name, P.jsonable_params(values), root=self.root)
            run.record.update({
                "procedure": plan.name, "command": shlex.join(self.command), "cwd": os.getcwd(),
                "parameters": {p.name: {**p.describe(), "value": P.jsonable_params({"v": values[p.name]})["v"]}
                               for p in plan.params},
                "versions": package_versions(), "data_file": DATA_FILE, "artifacts": [], "notes": {},
                "result": None, "segments": [], "instruments": None, "bench": None,
            })
            if "seed" in values:
                run.record["seeds"] = {"seed": values["seed"]}
            ctx.run = run
            ctx.data = DataFile(run.path / DATA_FILE, "w")
            ctx.data.set_attrs("/", {"procedure": plan.name, "run": run.path.name})
        run.record["segments"].append({"started": _now(), "ended": None, "wall_s": None, "bench_s": None,
                                       "status": "running", "pid": os.getpid(), "started_unix": wall})
        run.write()

    def _open_bench(self, ctx: Context, stack: contextlib.ExitStack) -> None:
        from labctl.bench.bench import Bench
        from labctl.runs.snapshot import instrument_snapshot

        bench = stack.enter_context(Bench.open(ctx.bench_path, lock_dir=self.lock_dir))
        # the guard turned SIGTERM into SystemExit; the engine handles it (pause at a checkpoint, then stop)
        self._install()
        ctx.bench = bench
        ctx.session = bench.session()
        ctx.session.taps.append(ctx.emit)
        run = ctx.run
        assert run is not None
        path = ctx.bench_path
        run.record["bench"] = {"name": bench.config.bench.name, "kind": bench.config.bench.kind,
                               "path": str(path.resolve()) if path is not None else None,
                               "embedded": path is None, "sha256": bench.config_sha256,
                               "wiring_sha256": ctx.session.wiring_sha256, "chip_id": ctx.session.chip_id}
        instruments = run.record.get("instruments") or {}
        instruments["identities"] = dict(bench.identities)
        instruments.setdefault("start", instrument_snapshot(bench))
        if "start" in instruments and run.record["resumes"]:
            instruments.setdefault("resumed", []).append(instrument_snapshot(bench))
        run.record["instruments"] = instruments
        run.write()

    def _execute(self, ctx: Context, resumed: bool) -> Outcome:
        plan = ctx.plan
        self._start_record(ctx, resumed)
        run = ctx.run
        assert run is not None and ctx.data is not None
        t_wall = time.perf_counter()
        bench_t0: float | None = None
        status, error, result = "failed", None, None
        stop_line: str | None = None
        safe_failures: list[str] = []
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(recoveries.listening(run.record.setdefault("recoveries", []).append))
                if plan.bench_needed(ctx.values):
                    self._open_bench(ctx, stack)
                    bench_t0 = float(ctx.session.clock.now_s)
                try:
                    result = self._drive(ctx)
                    status = "finished"
                finally:
                    self._stopping = True
                    self.bars.close()
                    if ctx.bench is not None:
                        safe_failures = self._end_bench(ctx, bench_t0, finished=status == "finished")
        except _PauseNow:
            status = "paused"
        except KeyboardInterrupt as exc:
            status, error = "interrupted", exc
        except BaseException as exc:
            status, error = "failed", exc
        finally:
            self._stopping = True
            seg = run.record["segments"][-1]
            seg.update(ended=_now(), wall_s=time.perf_counter() - t_wall, status=status)
            run.record["result"] = P.jsonable_params(result) if isinstance(result, dict) else run.record["result"]
            if safe_failures:
                run.record["safe_state_failures"] = safe_failures
            ctx.data.close()
            run.finish(status, error)
        if status in ("paused", "interrupted"):
            stop_line = self._stop_line(ctx, status, safe_failures)
            raise RunStopped(stop_line, status, run.path)
        if status == "failed":
            assert error is not None
            raise error
        return Outcome(status, result or {}, run.path, run.record)

    def _end_bench(self, ctx: Context, bench_t0: float | None, finished: bool = False) -> list[str]:
        """End snapshot, safe state, what the instruments say; a run that finished its work with a laser found off
        (switched on by the run) fails, naming it, once the bench is safe."""
        from labctl.runs.snapshot import instrument_snapshot

        run = ctx.run
        assert run is not None
        dark = ctx.bench.lasers_found_off() if finished else []
        try:
            end = instrument_snapshot(ctx.bench)
        except Exception as exc:  # noqa: BLE001 - the record says why; the safe state below must still run
            end = {"error": f"{type(exc).__name__}: {exc}"}
        failures = [f"{name}: {exc}" for name, exc in ctx.bench.make_safe()]
        errors = instrument_errors(ctx.bench)
        if errors:
            run.record.setdefault("instrument_errors", []).append({"time": _now(), "errors": errors})
        emulation = getattr(ctx.bench, "emulation", None)
        if emulation is not None and emulation.bench.faults.fired:  # emulator truth: what the test injected
            run.record.setdefault("faults_injected", []).extend(emulation.bench.faults.fired)
        seg = run.record["segments"][-1]
        if bench_t0 is not None:
            seg["bench_s"] = float(ctx.session.clock.now_s) - bench_t0
            seg["bench_clock"] = "virtual (projected bench time)" if ctx.session.clock.virtual else "wall"
        instruments = run.record.get("instruments") or {}
        instruments["end"] = end
        run.record["instruments"] = instruments
        if dark:
            run.record["safe_state_failures"] = failures or None
            raise InstrumentError(f"output found off at the end of the run though the run had switched it on "
                                  f"(interlock, key switch?): readings since it went off were dark; lasers "
                                  f"{', '.join(dark)}", instrument=dark[0])
        return failures

    def _stop_line(self, ctx: Context, status: str, failures: list[str]) -> str:
        safe = (SAFE_LINE if not failures else "SAFE STATE FAILED: " + "; ".join(failures)) \
            if ctx.bench is not None else "no instruments in use"
        run = ctx.run
        assert run is not None
        what = "paused" if status == "paused" else "stopped"
        where = run.record.get("notes", {}).get("position")
        where = f" at {where}" if where else ""
        if ctx.plan.resumable:
            how = f"resume with: labctl {ctx.plan.name} --resume {shlex.quote(str(run.path))}"
        else:
            how = f"nothing to resume; run again with: {shlex.join(self.command)}"
        return f"labctl {ctx.plan.name}: {what}{where}; {safe}; {how}"

    # -- the plan's messages ---------------------------------------------------------------------------------------
    def _drive(self, ctx: Context) -> Any:
        gen = ctx.plan.body(ctx, **ctx.values)
        self._last_checkpoint = time.monotonic()
        return self.execute(ctx, gen)

    def execute(self, ctx: Context, gen: Iterator[P.Message]) -> Any:
        """Run a plan generator to its end; returns its value (also for plans composed with ``yield from``)."""
        reply: Any = None
        while True:
            try:
                msg = gen.send(reply)  # type: ignore[attr-defined]
            except StopIteration as stop:
                return stop.value
            try:
                reply = self._handle(ctx, msg)
            except _PauseNow:
                gen.close()
                raise

    def _handle(self, ctx: Context, msg: P.Message) -> Any:
        run, data = ctx.run, ctx.data
        assert run is not None and data is not None
        if isinstance(msg, P.Step):
            self.bars.step(msg.name, msg.total, msg.unit)
        elif isinstance(msg, P.Advance):
            self.bars.advance(msg.n)
        elif isinstance(msg, P.Data):
            data.append(msg.stream, msg.row)
        elif isinstance(msg, P.Array):
            data.write(msg.name, msg.value, msg.attrs)
        elif isinstance(msg, P.Artifact):
            path = Path(msg.path)
            entry = {"kind": msg.kind, "path": str(path.resolve()),
                     "sha256": msg.sha256 or (sha256_file(path) if path.is_file() else None), "note": msg.note}
            run.record.setdefault("artifacts", []).append(entry)
            run.write()
        elif isinstance(msg, P.Note):
            run.record.setdefault("notes", {})[msg.key] = P.jsonable_params({"v": msg.value})["v"]
            run.write()
        elif isinstance(msg, P.Projection):
            if max(msg.wall_s or 0.0, msg.bench_s or 0.0) >= PROJECT_ABOVE_S or (msg.wall_s is None
                                                                                 and msg.bench_s is None):
                self.say(projection_line(msg))
            run.record.setdefault("notes", {}).setdefault("projections", []).append(
                {"what": msg.what, "wall_s": msg.wall_s, "bench_s": msg.bench_s, "basis": msg.basis})
            run.write()
        elif isinstance(msg, P.Checkpoint):
            return self._checkpoint(ctx, msg)
        else:
            raise TypeError(f"plan {ctx.plan.name} yielded {msg!r}, not a message")
        return None

    def _checkpoint(self, ctx: Context, msg: P.Checkpoint) -> bool:
        run, data = ctx.run, ctx.data
        assert run is not None and data is not None
        pause = self._pause_requested
        if msg.make is None:
            if pause:
                run.record.setdefault("notes", {})["position"] = msg.where
                raise _PauseNow()
            return False
        if not (msg.due or pause):
            return False
        ckpt = msg.make()
        ckpt.meta["data_rows"] = dict(data.rows)
        ckpt.meta["where"] = msg.where
        step = int((ckpt.meta.get("position") or {}).get("step", len(run.record["checkpoints"])))
        run.record.setdefault("notes", {})["position"] = msg.where
        run.save_checkpoint(ckpt, f"s{step:09d}")
        self._last_checkpoint = time.monotonic()
        if pause:
            raise _PauseNow()
        return True

    def seconds_since_checkpoint(self) -> float:
        return time.monotonic() - self._last_checkpoint

    # -- signals -------------------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stopping:
            return                        # already making the bench safe: let it finish
        self._signals += 1
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self._signals == 1 and self._resumable:
            self._pause_requested = True
            self.say(f"{name}: pausing at the next checkpoint ({name} again to stop now)")
            return
        raise KeyboardInterrupt

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    @contextlib.contextmanager
    def _signals_handled(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._signals, self._pause_requested, self._stopping = 0, False, False
        self._install()
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def instrument_errors(bench: Any) -> dict[str, Any]:
    """What every instrument's error queue (or error lines) held at the end of a run: {name: [[code, text]]}, or
    {name: "could not read: ..."}; instruments with nothing to say are left out."""
    out: dict[str, Any] = {}
    for name, driver in bench.instruments.items():
        read = getattr(driver, "read_errors", None)
        if not callable(read):
            continue
        try:
            errors = read()
        except (InstrumentError, OSError) as exc:
            out[name] = f"could not read: {exc}"
            continue
        if errors:
            out[name] = [[int(code), str(text)] for code, text in errors]
    return out


def projection_line(msg: P.Projection) -> str:
    parts = []
    if msg.wall_s is not None:
        parts.append(f"{format_duration(msg.wall_s)} on this computer")
    if msg.bench_s is not None:
        parts.append(f"{format_duration(msg.bench_s)} of bench time")
    text = " and ".join(parts) if parts else "unknown"
    return f"projected {msg.what}: {text} ({msg.basis})"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
