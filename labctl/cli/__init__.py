"""The ``labctl`` command line."""

from labctl.cli.main import main

__all__ = ["main"]
