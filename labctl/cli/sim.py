"""``labctl sim serve``: an emulated bench for other processes (PyMeasure, plain pyvisa, the vendors' libraries).

The first output maps each instrument to what a client opens (one JSON object with ``--json``); then the bench is
served until Ctrl-C or SIGTERM, and every exchange is logged with ``--log``. See :mod:`labctl.sim.serve` for how
the chip's virtual time relates to a client's wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, TextIO

from labctl.cli.common import bench_path


def add_sim_commands(sub: Any) -> None:
    sim = sub.add_parser("sim", help="the emulated bench on its own")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser(
        "serve", help="serve an emulated bench until Ctrl-C: VISA instruments on raw SCPI sockets on the loopback "
                      "interface (TCPIP0::127.0.0.1::<port>::SOCKET), serial instruments on pseudo-terminals")
    serve.add_argument("--bench", help="emulated bench file, or an embedded bench name (default: the embedded "
                                       "default)")
    serve.add_argument("--json", action="store_true", help="first output: one JSON object (instrument -> address)")
    serve.add_argument("--log", nargs="?", const="-", metavar="FILE",
                       help="log every exchange (virtual time, instrument, message, reply) to FILE (default stderr)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=0,
                       help="first TCP port (instrument i listens on PORT + i); default: ports the system picks")
    serve.add_argument("--wall-clock", action="store_true",
                       help="let the chip's virtual time follow the wall clock while clients pause (drift and "
                            "settling during a client's sleeps); default: only what each message costs counts")
    serve.set_defaults(func=_serve)


def _exchange_printer(stream: TextIO, clock: Any) -> Any:
    def log_exchange(name: str, message: str, reply: str | bytes | None) -> None:
        shown = reply if not isinstance(reply, bytes) else f"<{len(reply)} bytes> {reply[:24]!r}..."
        stream.write(f"{clock.now_s:12.6f} s  {name:10s} <- {message!r}\n")
        if reply is not None:
            stream.write(f"{'':14s}  {name:10s} -> {shown!r}\n" if isinstance(reply, str)
                         else f"{'':14s}  {name:10s} -> {shown}\n")
        stream.flush()

    return log_exchange


def _serve(args: argparse.Namespace) -> int:
    from labctl.bench.config import load_bench
    from labctl.bench.emulation import serve

    config, _ = load_bench(bench_path(args.bench))
    if config.bench.kind != "emulated":
        raise ValueError(f"--bench: {config.bench.name!r} is a real bench; only emulated benches can be served")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: {args.port} is not a TCP port")
    log_stream: TextIO | None = None
    if args.log == "-":
        log_stream = sys.stderr
    elif args.log is not None:
        log_stream = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    server, emulation = serve(config, host=args.host, base_port=args.port, follow_wall_clock=args.wall_clock)
    try:
        if log_stream is not None:
            emulation.bench.exchange_log = _exchange_printer(log_stream, emulation.clock)
        drivers = {name: inst.driver for name, inst in config.instruments.items()}
        addresses = server.addresses
        if args.json:
            print(json.dumps({"bench": config.bench.name, "seed": config.chip.seed if config.chip else None,
                              "pid": os.getpid(), "addresses": addresses, "drivers": drivers}), flush=True)
        else:
            print(f"serving emulated bench {config.bench.name!r} ({config.bench.description}); Ctrl-C to stop",
                  flush=False)
            for name, address in addresses.items():
                print(f"  {name:10s} {drivers[name]:18s} {address}")
            sys.stdout.flush()
        previous = {sig: signal.signal(sig, lambda *_: server.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        server.close()
        emulation.close()
        if log_stream is not None and log_stream is not sys.stderr:
            log_stream.close()
    if not args.json:
        print(f"stopped; projected bench time served: {emulation.clock.now_s:.3f} s", file=sys.stderr)
    return 0
