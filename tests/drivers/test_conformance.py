"""Conformance over every driver that has a simulation profile: the same promises hold for all of them.

Each driver opens through ``pyvisa.ResourceManager("<shipped yaml>@sim")``, identifies itself, reports a clean
error state, refuses out-of-range settings without sending anything, reports its settings as a JSON snapshot,
and closes. The shipped YAML must equal a
fresh rendering from the driver's declarations, so command spellings live in one place.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from labctl.drivers.errors import InstrumentConnectionError, InstrumentReportedError, LimitError
from labctl.drivers.instrument import ScpiInstrument, Setting
from labctl.drivers.parsing import Identity
from labctl.drivers.validators import IntRange, Range
from labctl.sim.protocol import SimProfile, all_profiles, render_text, yaml_path

PROFILES = all_profiles()
IDS = [p.device for p in PROFILES]


def test_there_are_profiles() -> None:
    assert PROFILES, "no simulation profiles were discovered"


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_shipped_yaml_matches_the_driver_declarations(profile: SimProfile) -> None:
    shipped = yaml_path(profile)
    assert shipped.exists(), f"{shipped} missing: run python -m labctl.sim.protocol"
    assert shipped.read_text() == render_text(profile), (
        f"{shipped.name} is stale: run python -m labctl.sim.protocol")


def _open(profile: SimProfile, tmp_path: Path, resource: str) -> Any:
    import pyvisa

    copy = tmp_path / yaml_path(profile).name
    shutil.copy(yaml_path(profile), copy)
    rm = pyvisa.ResourceManager(f"{copy}@sim")
    return profile.driver(resource, resource_manager=rm, timeout_s=0.2, **profile.open_kwargs)


def _out_of_range(setting: Setting[Any]) -> Any:
    validator = setting.validator
    if isinstance(validator, Range):
        return validator.hi + max(1.0, abs(validator.hi)) if math.isfinite(validator.hi) else math.nan
    if isinstance(validator, IntRange):
        return validator.hi + 1
    return None


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_driver_conformance(profile: SimProfile, tmp_path: Path) -> None:
    for resource in profile.resources:
        driver = _open(profile, tmp_path, resource)
        identity = driver.identity()
        assert isinstance(identity, Identity) and identity.model
        driver.check_errors()  # clean at connect

        if isinstance(driver, ScpiInstrument):
            driver.write(":LABCTL:NOT:A:COMMAND")
            with pytest.raises(InstrumentReportedError) as info:
                driver.check_errors()
            assert info.value.errors and info.value.errors[0][0] != 0
            driver.check_errors()  # the queue was drained

        sent_before = _count_writes(driver)
        for setting in type(driver).settings_declared():
            bad = _out_of_range(setting)
            if bad is None or setting.command is None or "{ch}" in setting.command:
                continue
            with pytest.raises(LimitError, match=setting.name):
                setattr(driver, setting.name, bad)
        assert _count_writes(driver) == sent_before, "a refused setting reached the transport"

        snap = driver.snapshot()
        assert json.loads(json.dumps(snap)) == snap   # plain JSON for the run records
        assert snap["identity"]["model"] == identity.model and snap["address"] == resource
        assert _count_writes(driver) >= sent_before   # queries only: nothing refused, nothing changed

        driver.close()
        with pytest.raises(InstrumentConnectionError):
            driver.identity()


def _count_writes(driver: Any) -> int:
    return getattr(driver.transport, "write_count", 0)
