"""A user procedure for the study tests, named by import path as a user's would be."""

from __future__ import annotations

import os
from typing import Any

from labctl.study.jobs import JobContext


def square(params: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """y = x^2; x = 3 is refused, so one job of a study fails on purpose."""
    x = params["x"]
    if x == 3:
        raise ValueError("x = 3 is refused (a job that fails on purpose)")
    (context.job_dir / "note.txt").write_text(f"x = {x}\n")
    return {"y": x * x, "pid": os.getpid()}
