"""IEEE 488.2 §10 common commands, declared once; each tree picks those its manual lists.

Actions: ``*IDN?`` query identity, ``*RST`` do reset, ``*CLS`` do clear_status, ``*OPC`` set/``*OPC?`` query
operation_complete, ``*ESE``/``*ESE?`` event_status_enable, ``*ESR?`` event_status_register, ``*SRE``/``*SRE?``
service_request_enable, ``*STB?`` status_byte, ``*TST?`` self_test, ``*WAI`` do wait, ``*TRG`` do trigger,
``*OPT?`` options.
"""

from __future__ import annotations

from labctl.sim.scpi.params import Num
from labctl.sim.scpi.tree import Cmd

_REGISTER = (Num("mask", lo=0, hi=255, integer=True, keywords=False),)
_SOURCE = "IEEE 488.2-1992 §10 (mandatory and optional common commands)"

IDN = Cmd("*IDN", query="identity", source=_SOURCE)
RST = Cmd("*RST", do="reset", source=_SOURCE)
CLS = Cmd("*CLS", do="clear_status", source=_SOURCE)
OPC = Cmd("*OPC", do="operation_complete_flag", query="operation_complete", source=_SOURCE)
ESE = Cmd("*ESE", set="event_status_enable", params=_REGISTER, query="event_status_enable", source=_SOURCE)
ESR = Cmd("*ESR", query="event_status_register", source=_SOURCE)
SRE = Cmd("*SRE", set="service_request_enable", params=_REGISTER, query="service_request_enable", source=_SOURCE)
STB = Cmd("*STB", query="status_byte", source=_SOURCE)
TST = Cmd("*TST", query="self_test", source=_SOURCE)
WAI = Cmd("*WAI", do="wait", source=_SOURCE)
TRG = Cmd("*TRG", do="trigger", source=_SOURCE)
OPT = Cmd("*OPT", query="options", source=_SOURCE)

#: The ten commands 488.2 makes mandatory for every device.
MANDATORY = (IDN, RST, CLS, OPC, ESE, ESR, SRE, STB, TST, WAI)
