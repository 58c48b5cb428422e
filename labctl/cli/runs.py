"""``labctl runs``, ``labctl show RUN`` and ``labctl report RUN``: the records in the data folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from labctl.cli.common import json_default
from labctl.runs.record import run_row


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    from labctl.runs.engine import format_duration

    return format_duration(value)


def _runs(args: argparse.Namespace) -> int:
    from labctl.runs.history import list_runs

    if args.limit < 0:
        raise ValueError(f"--limit: {args.limit} must be >= 0 (0: all)")
    rows = [run_row(r) for r in list_runs(args.data_dir)]
    if args.procedure:
        rows = [r for r in rows if r["procedure"] == args.procedure]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        from labctl.runs.record import data_dir

        print(f"no runs in {data_dir(args.data_dir)}")
        return 0
    print(f"{'run':44s} {'procedure':12s} {'status':11s} {'bench':18s} {'wall':>8s} {'bench time':>10s}")
    for r in rows[: args.limit or None]:
        print(f"{r['id']!s:44s} {r['procedure']!s:12s} {r['status']!s:11s} {r['bench'] or '-':18s} "
              f"{_fmt_s(r['wall_s']):>8s} {_fmt_s(r['bench_s']):>10s}")
    return 0


def show_lines(rec: dict[str, Any], run_dir: Path) -> list[str]:
    from labctl.runs.datafile import describe

    row = run_row(rec)
    lines = [f"run {rec.get('id')}: {row['procedure']}, {rec.get('status')}",
             f"  folder   {run_dir}",
             f"  command  {rec.get('command', '-')}",
             f"  started  {rec.get('created')}; wall time {_fmt_s(row['wall_s'])}, bench time {_fmt_s(row['bench_s'])}"
             + (" (projected: emulated bench)" if (rec.get('bench') or {}).get('kind') == 'emulated' else "")]
    bench = rec.get("bench") or {}
    if bench:
        lines.append(f"  bench    {bench.get('name')} ({bench.get('kind')}), file sha256 "
                     f"{str(bench.get('sha256'))[:16]}..., chip {bench.get('chip_id')!r}")
    params = rec.get("params") or {}
    if params:
        lines.append("  params   " + ", ".join(f"{k}={v}" for k, v in params.items() if k != "experiment"))
    code = rec.get("code") or {}
    lines.append(f"  code     labctl {code.get('labctl')}, git {str(code.get('git_commit'))[:12]}"
                 f"{' (dirty)' if code.get('git_dirty') else ''}")
    inst = (rec.get("instruments") or {}).get("identities") or {}
    if inst:
        lines.append(f"  instruments ({len(inst)}): " + "; ".join(f"{k}: {v}" for k, v in list(inst.items())[:4])
                     + (" ..." if len(inst) > 4 else ""))
    for art in rec.get("artifacts") or []:
        lines.append(f"  artifact {art['kind']}: {art['path']} (sha256 {str(art.get('sha256'))[:16]}...) "
                     f"{art.get('note', '')}")
    for ck in (rec.get("checkpoints") or [])[-1:]:
        lines.append(f"  checkpoint {ck['file']} at {ck.get('position')}")
    if rec.get("error"):
        lines.append(f"  error    {rec['error'].get('type')}: {rec['error'].get('message')}")
    result = rec.get("result") or {}
    keys = ("bits", "true_bits", "span", "test_accuracy", "projected_time_s", "transactions", "rmse")
    shown = {k: result[k] for k in keys if isinstance(result.get(k), int | float)}
    if shown:
        lines.append("  result   " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    for h in (rec.get("history") or [])[-3:]:
        lines.append(f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f}, test accuracy "
                     f"{100 * (h.get('test_accuracy') or 0):.2f} %")
    data = run_dir / (rec.get("data_file") or "data.h5")
    if data.is_file():
        try:
            tree = describe(data)
        except OSError as exc:
            lines.append(f"  data     {data}: unreadable ({exc})")
        else:
            lines.append(f"  data     {data} ({len(tree)} datasets)")
            for name, info in list(tree.items())[:40]:
                lines.append(f"    {name:44s} {'x'.join(map(str, info['shape'])) or 'scalar':>14s} {info['dtype']}")
    return lines


def _show(args: argparse.Namespace) -> int:
    from labctl.runs.history import find_run
    from labctl.runs.record import read_record

    run_dir = find_run(args.run, args.data_dir)
    rec = read_record(run_dir)
    if args.json:
        print(json.dumps(rec, indent=2, default=json_default))
    else:
        print("\n".join(show_lines(rec, run_dir)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from labctl.runs.history import find_run
    from labctl.runs.report import write_report

    folder = Path(args.run)
    if folder.is_dir():
        from labctl.study.report import is_study

        if is_study(folder):              # a study folder: its own drawing (labctl study)
            from labctl.cli.study import report_study_folder

            return report_study_folder(folder, args)
    run_dir = find_run(args.run, args.data_dir)
    out = write_report(run_dir, Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps({"html": str(out.html), "figures": [str(f) for f in out.figures]}, indent=2))
    else:
        for fig in out.figures:
            print(f"figure: {fig}")
        print(f"report: {out.html}")
    return 0


def add_run_commands(subparsers: Any, add_verbose: Any) -> None:
    runs = subparsers.add_parser("runs", help="list the runs in the data folder, newest first")
    runs.add_argument("--data-dir", default=None, help="data folder (default: $LABCTL_DATA or ./runs)")
    runs.add_argument("--procedure", help="only runs of this procedure")
    runs.add_argument("--limit", type=int, default=0, help="show at most this many (default: all)")
    runs.add_argument("--json", action="store_true")
    add_verbose(runs)
    runs.set_defaults(func=_runs)

    show = subparsers.add_parser("show", help="summarize one run: parameters, bench, outcome, data")
    show.add_argument("run", metavar="RUN", help="run folder, run id (or prefix), or 'latest'")
    show.add_argument("--data-dir", default=None)
    show.add_argument("--json", action="store_true", help="the whole run.json")
    add_verbose(show)
    show.set_defaults(func=_show)

    rep = subparsers.add_parser("report", help="figures (PNG) and a one-page HTML summary of one run, or the plots "
                                               "and tables of a study folder")
    rep.add_argument("run", metavar="RUN", help="run folder, run id (or prefix), 'latest', or a study folder")
    rep.add_argument("--data-dir", default=None)
    rep.add_argument("--out", default=None, help="folder for the report (default: RUN/report)")
    rep.add_argument("--json", action="store_true")
    add_verbose(rep)
    rep.set_defaults(func=_report)
