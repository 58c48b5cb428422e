"""``labctl bench scan`` against the emulated instruments (resource lists injected): every instrument is found with
the right driver and a stanza that validates, and nothing but identity queries reaches an instrument."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from labctl.bench.config import InstrumentConfig, embedded_bench_path, load_bench
from labctl.bench.emulation import Emulation, build_emulation
from labctl.bench.scan import scan, summarize
from labctl.cli.main import main
from labctl.sim.protocol import yaml_path
from tests.drivers import protocol_fakeinst

if "tests.drivers" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("tests.drivers")

IDENTITY_QUERIES = {"*IDN?", "id?"}


@pytest.fixture(params=["default", "current", "adc"])
def emulated(request: pytest.FixtureRequest) -> Iterator[tuple[str, Emulation, list[str]]]:
    """An embedded bench's emulated instruments, every line they receive recorded."""
    config, _ = load_bench(embedded_bench_path(request.param))
    emulation = build_emulation(config)
    received: list[str] = []
    for inst in emulation.bench.instruments.values():
        original = inst.model.handle

        def handle(line: str, _original=original) -> object:
            received.append(line.strip())
            return _original(line)

        inst.model.handle = handle  # type: ignore[method-assign]
    try:
        yield request.param, emulation, received
    finally:
        emulation.close()


def test_scan_finds_every_emulated_instrument_with_its_driver(emulated: tuple[str, Emulation, list[str]]) -> None:
    name, emulation, received = emulated
    config, _ = load_bench(embedded_bench_path(name))
    addresses = emulation.bench.addresses
    visa = [a for a in addresses.values() if "::" in a]
    ports = [a for a in addresses.values() if "://" in a]
    found = {f.address: f for f in scan(resource_manager=emulation.resource_manager, visa=visa, serial=ports,
                                        timeout_s=0.2)}
    assert set(found) == set(addresses.values())
    for inst_name, inst in config.instruments.items():
        f = found[addresses[inst_name]]
        assert f.driver == inst.driver, (inst_name, f)
        table = tomllib.loads(f.stanza)["instruments"]
        (entry,) = table.values()
        checked = InstrumentConfig.model_validate(entry)          # the stanza is a valid bench-file entry
        assert checked.driver == inst.driver and checked.address == f.address and checked.model == f.model
    names = [f.name for f in found.values()]
    assert len(set(names)) == len(names)                          # unique names to paste
    assert set(received) <= IDENTITY_QUERIES, set(received) - IDENTITY_QUERIES


def test_silent_and_unknown_instruments_are_reported_not_matched(fake_serial_responders: dict) -> None:
    fake_serial_responders["mute"] = lambda line: None
    fake_serial_responders["dmm"] = lambda line: b"Keysight Technologies,34465A,MY1,A.02\n" \
        if line.strip() == b"*IDN?" else None
    found = scan(visa=[], serial=["fakeinst://mute", "fakeinst://dmm"], timeout_s=0.05)
    mute, dmm = found
    assert mute.driver is None and mute.identity is None and "no identity answer" in mute.note
    assert dmm.driver is None and dmm.model == "34465A" and "no labctl driver accepts" in dmm.note
    assert mute.stanza is None and dmm.stanza is None
    assert "34465A" in summarize(found)


@pytest.fixture
def fake_serial_responders() -> Iterator[dict]:
    yield protocol_fakeinst.RESPONDERS
    protocol_fakeinst.RESPONDERS.clear()
    protocol_fakeinst.TERMINATORS.clear()


def test_cli_scan_json_with_a_pyvisa_sim_library_and_a_simulated_serial_port(tmp_path: Path) -> None:
    config, _ = load_bench(embedded_bench_path("default"))
    emulation = build_emulation(config)
    try:
        heaters = emulation.address("heaters")
        library = tmp_path / yaml_path("Keysight DAQ970A").name
        shutil.copy(yaml_path("Keysight DAQ970A"), library)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["bench", "scan", "--json", "--timeout", "0.2", "--visa-library", f"{library}@sim",
                         "--resource", "GPIB0::9::INSTR", "--port", heaters])
    finally:
        emulation.close()
    assert code == 0
    report = json.loads(out.getvalue())
    assert [(r["address"], r["driver"], r["model"], r["name"]) for r in report] == [
        ("GPIB0::9::INSTR", "keysight_daq970a", "DAQ970A", "adc"), (heaters, "qontrol", "Q8iv", "heaters")]


def test_cli_scan_refuses_a_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "scan", "--timeout", "0", "--no-visa", "--no-serial"])
    assert exc.value.code == 2 and "--timeout" in capsys.readouterr().err
