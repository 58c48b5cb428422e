"""SCPI for the emulated instruments: an IEEE 488.2 / SCPI-99 parser and one command tree per VISA instrument
family, written from its manual, so that any client (PyMeasure, plain pyvisa, LabExT, QMI ...) is understood as
the real instrument would understand it, and rejected with the code the real instrument would queue.

``Parser(tree).parse(message)`` -> a list of :class:`Parsed` (action name, converted arguments, suffixes) or
:class:`ScpiError` per program message unit. Trees: :data:`labctl.sim.scpi.trees.TREES`.
"""

from labctl.sim.scpi.errors import ScpiError
from labctl.sim.scpi.params import (
           Block,
           Bool,
           Choice,
           Expr,
           Keyword,
           Num,
           Quantity,
           Str,
)
from labctl.sim.scpi.parser import Parsed, Parser
from labctl.sim.scpi.tree import Cmd, Suffix, Tree
from labctl.sim.scpi.units import Unit

__all__ = ["Block", "Bool", "Choice", "Cmd", "Expr", "Keyword", "Num", "Parsed", "Parser", "Quantity", "ScpiError",
           "Str", "Suffix", "Tree", "Unit"]
