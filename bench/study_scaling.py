"""Study scaling: the speed-up of 2 Dask workers over 1 on the same study, and the per-job scheduling overhead.

The study: ``--jobs`` calibrate-verify jobs (verification: 4 vectors, model only) on a mid-size emulated chip
(2 banks x 5 rings on 5 WDM channels, the default bench's instruments), one chip seed per job. It runs three
times or more on the same spec, each in a fresh study folder: in this process without Dask (serial reference),
then ``--repeats`` pairs of runs on a LocalCluster of 1 worker and on one of 2 workers (alternating which goes first) (processes, one thread each, as ``labctl study`` starts them).
Each cluster is started and warmed (every worker imports labctl and loads the compiled chip kernels) before its
clock starts; start-up is printed separately, as it is paid once per study, not per job.

Printed:
  speed-up        makespan(1 worker) / makespan(2 workers), makespan = first submission to last result
  overhead/job    (makespan x workers - sum of job wall times) / jobs, with 1 worker (scheduling, transfer, the
                  client's bookkeeping; no idle tail), in s and as a share of the mean job wall time
  machine load    load average, and the cores other processes kept busy during each run (from /proc/stat minus
                  this process tree): the machine is shared, and the 2-worker run needs both cores free
  efficiency      speed-up x (cores this process tree got with 1 worker / with 2 workers): how much of the CPU the
                  second worker actually obtained turned into jobs (1.0: all of it)

    python bench/study_scaling.py [--jobs 8] [--repeats 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import tomli_w

from labctl.bench.config import embedded_bench_path
from labctl.study.runner import dask_client, run_study
from labctl.study.spec import load_spec

BANKS, RINGS = 2, 5


def mid_bench(path: Path) -> Path:
    """The default bench cut down to 2 banks x 5 rings on 5 channels (5 lasers, 4 meter ports)."""
    import tomllib

    data = tomllib.loads(embedded_bench_path("default").read_text())
    data["bench"]["name"] = "emulated-2x5"
    data["chip"] = {"seed": 0, "spec": {"layout": {"n_banks": BANKS, "n_rings": RINGS},
                                        "lasers": {"n_channels": RINGS}}}
    lasers = [f"laser{k}" for k in range(RINGS)]
    data["instruments"] = {k: v for k, v in data["instruments"].items() if not k.startswith("laser") or k in lasers}
    w = data["wiring"]
    w.update(banks=BANKS, rings=RINGS, lasers=lasers, wavelengths_m=w["wavelengths_m"][:RINGS],
             detectors=w["detectors"][:BANKS])
    w["heaters"]["channels"] = list(range(BANKS * RINGS))
    path.write_text(tomli_w.dumps(data))
    return path


def spec_file(folder: Path, jobs: int) -> Path:
    mid_bench(folder / "bench-2x5.toml")
    path = folder / "scaling.toml"
    path.write_text(f"""[study]
name = "scaling"
procedure = "calibrate-verify"
bench = "bench-2x5.toml"
[params]
"verify.n" = 4
"verify.refine" = false
[grid]
"chip.seed" = {{ range = [0, {jobs}] }}
""")
    return path


class CpuMeter:
    """Cores busy machine-wide and in this process tree between start() and stop()."""

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
        ours = 0.0
        for p in tree:
            try:
                t = p.cpu_times()
                ours += t.user + t.system
            except psutil.Error:
                pass
        return sum(fields) - idle, sum(fields), ours

    def start(self) -> None:
        self.t0, self.s0 = time.monotonic(), self._sample()

    def stop(self) -> dict[str, float]:
        busy1, total1, ours1 = self._sample()
        busy0, total0, ours0 = self.s0
        wall = time.monotonic() - self.t0
        cores = os.cpu_count() or 1
        machine = (busy1 - busy0) / (total1 - total0) * cores if total1 > total0 else 0.0
        ours = (ours1 - ours0) / wall if wall > 0 else 0.0
        return {"machine_cores_busy": machine, "our_cores_busy": ours, "others_cores_busy": max(machine - ours, 0.0)}


def warm(folder: str) -> str:
    """Run on every worker before the clock starts: import labctl and load the compiled chip kernels."""
    from pathlib import Path as P

    from labctl.procedures.calibrate import run_calibration

    out = P(folder) / f"warm-{os.getpid()}.json"
    run_calibration(P(folder) / "bench-2x5.toml", out)
    return str(os.getpid())


def timed_run(spec: Any, root: Path, workers: int | None) -> dict[str, Any]:
    meter = CpuMeter()
    if workers is None:
        meter.start()
        t0 = time.perf_counter()
        out = run_study(spec, root=root, serial=True, progress=False, new=True)
        makespan = time.perf_counter() - t0
        return {"label": "serial (no Dask)", "makespan_s": makespan, "startup_s": 0.0, "outcome": out,
                "load": meter.stop(), "workers": 1}
    t0 = time.perf_counter()
    with dask_client(None, workers) as client:
        client.run(warm, str(spec.source.parent))
        startup = time.perf_counter() - t0
        meter.start()
        out = run_study(spec, root=root, scheduler=client.scheduler.address, progress=False, new=True)
        load = meter.stop()
    return {"label": f"LocalCluster, {workers} worker{'s' if workers > 1 else ''}",
            "makespan_s": out.timing["makespan_s"], "startup_s": startup, "outcome": out, "load": load,
            "workers": workers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2,
                        help="pairs of 1- and 2-worker runs, alternating which goes first (the load drifts)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the study folders here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)     # the jobs' warnings are in their job.log files
    import distributed  # noqa: F401  (its import sets its loggers' levels: quiet them after it)

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="labctl-study-scaling-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        spec = load_spec(spec_file(folder, args.jobs))
        print(f"study: {args.jobs} calibrate-verify jobs on a {BANKS}x{RINGS}-ring emulated chip; machine: "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
        warm(str(folder))                       # this process too (the serial run's kernels)
        plan = [None] + [w for rep in range(args.repeats) for w in ((1, 2) if rep % 2 == 0 else (2, 1))]
        runs: list[dict[str, Any]] = []
        for i, workers in enumerate(plan):
            r = timed_run(spec, folder / f"run-{i}-{workers or 0}", workers)
            runs.append(r)
            rows = r["outcome"].rows
            walls = [row["wall_s"] for row in rows]
            r["job_mean_s"] = statistics.fmean(walls)
            r["overhead_per_job_s"] = (r["makespan_s"] * r["workers"] - sum(walls)) / len(rows)
            bad = [row for row in rows if row["status"] != "finished"]
            print(f"{r['label']:26s} makespan {r['makespan_s']:6.1f} s, start-up {r['startup_s']:4.1f} s, job wall "
                  f"mean {r['job_mean_s']:.2f} s, overhead/job {r['overhead_per_job_s'] * 1e3:7.1f} ms; other "
                  f"processes kept {r['load']['others_cores_busy']:.2f} cores busy, we {r['load']['our_cores_busy']:.2f}"
                  + (f"; {len(bad)} jobs FAILED" if bad else ""), flush=True)
        serial = runs[0]
        ones = [r for r in runs[1:] if r["workers"] == 1]
        twos = [r for r in runs[1:] if r["workers"] == 2]
        reference = [(a["job"], a["figures"]) for a in serial["outcome"].rows]
        same = all([(a["job"], a["figures"]) for a in r["outcome"].rows] == reference for r in runs)
        speedups = [a["makespan_s"] / b["makespan_s"] for a, b in zip(ones, twos)]
        shares = [r["overhead_per_job_s"] / r["job_mean_s"] for r in ones]
        others = statistics.fmean(r["load"]["others_cores_busy"] for r in twos)
        print(f"speed-up 2 workers over 1: {statistics.median(speedups):.2f}x median of {len(speedups)} "
              f"({', '.join(f'{x:.2f}' for x in speedups)}; target >= 1.7x); other processes kept {others:.2f} of "
              f"{os.cpu_count()} cores busy during the 2-worker runs")
        # what the 2 workers did with the CPU they got: speed-up per core obtained, relative to the 1-worker run
        efficiency = [sp * a["load"]["our_cores_busy"] / b["load"]["our_cores_busy"]
                      for sp, a, b in zip(speedups, ones, twos)]
        got_1 = ", ".join(f"{a['load']['our_cores_busy']:.2f}" for a in ones)
        got_2 = ", ".join(f"{b['load']['our_cores_busy']:.2f}" for b in twos)
        print(f"cores we obtained: 1 worker {got_1}, 2 workers {got_2}; speed-up per core obtained "
              + ", ".join(f"{e:.2f}" for e in efficiency) + " (1.0: the second core's share all turned into jobs)")
        each = ", ".join(f"{r['overhead_per_job_s'] * 1e3:.1f} ms of {r['job_mean_s']:.2f} s" for r in ones)
        print(f"per-job scheduling overhead (1 worker): {statistics.median(shares) * 100:.2f} % of a job, median of "
              f"{len(shares)} ({each}"
              f"; target <= 2 %); 2 workers, idle tail included: "
              + ", ".join(f"{100 * r['overhead_per_job_s'] / r['job_mean_s']:.2f} %" for r in twos))
        print(f"serial in this process, no Dask: makespan {serial['makespan_s']:.1f} s; every job's figures identical in "
              f"all {len(runs)} runs: {same}")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
