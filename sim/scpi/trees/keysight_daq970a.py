"""Keysight DAQ970A / DAQ973A and 34970A / 34972A data acquisition units: the DC-volts scanning subset.

Sources: 34970A/34972A User's Guide (ch. 4-5: CONFigure with a channel list, custom A/D integration time in NPLC
or aperture, ROUTe:SCAN and ROUTe:SCAN:SIZE?, INITiate/FETCh?/READ?, TRIGger:SOURce and :COUNt, reading format),
DAQ970A Programming Guide (ROUT:SCAN:SIZE? p.215; APERture documented for CURRent and RESistance), public
drivers quoting ``CONF:VOLT:DC <range>,(@101)`` and ``SENS:VOLT:DC:NPLC <n>,(@<ch>)``; see the module docstring of
``labctl.drivers.keysight_daq970a``. Channel lists are SCPI expressions ``(@101:104,110)``, passed through.
The VOLTage aperture spelling is unconfirmed (marked), as is the optional ``[:SENSe]`` root on this family
(SCPI-99 convention; public code sends both ``SENS:VOLT:DC:NPLC`` and ``VOLT:DC:NPLC``).
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.params import Choice, Expr, Num
from labctl.sim.scpi.tree import Cmd, Tree

_G = "34970A/34972A User's Guide"
_LIMIT = (Choice("limit", options=("MINimum", "MAXimum", "DEFault"), optional=True),)
#: The manual lets the range be left out before the channel list; this tree asks for it (the parser matches
#: parameters by position), as every line our driver sends has it.
_RANGE = Num("range", lo=0.0, hi=300.0, specials=("AUTO",))
_CHANNELS = Expr("channels")

TREE = Tree(
    "Keysight DAQ970A",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI)
    + (
        Cmd(":CONFigure:VOLTage[:DC]", do="configure_dc_volts", params=(_RANGE, _CHANNELS),
            query="configuration", query_params=(Expr("channels", optional=True),),
            source=f"{_G} 'CONF:VOLT:DC <range>,(@ch)' [M][D]"),
        Cmd(":MEASure:VOLTage[:DC]", query="measure_dc_volts", query_params=(_RANGE, _CHANNELS),
            source=f"{_G} 'MEAS:VOLT:DC? <range>,(@ch)' [M]"),
        Cmd("[:SENSe]:VOLTage[:DC]:NPLCycles", set="nplc", params=(Num("nplc", lo=0.02, hi=200.0), _CHANNELS),
            query="nplc", query_params=(_CHANNELS,), source=f"{_G} 'Custom A/D integration time' [M][D]"),
        Cmd("[:SENSe]:VOLTage[:DC]:APERture", set="aperture_s", params=(Num("aperture", lo=2e-6, hi=4.0), _CHANNELS),
            query="aperture_s", query_params=(_CHANNELS,), confirmed=False,
            source="DAQ970A Programming Guide (APERture for CURRent/RESistance; VOLTage spelling [?])"),
        Cmd("[:SENSe]:VOLTage[:DC]:RANGe", set="range_v", params=(Num("range", lo=0.0, hi=300.0), _CHANNELS),
            query="range_v", query_params=(_CHANNELS,), source=f"{_G} 'SENS:VOLT:DC:RANG' [M]"),
        Cmd(":ROUTe:SCAN", set="scan_list", params=(_CHANNELS,), query="scan_list",
            source=f"{_G} ch. 5 'ROUT:SCAN (@ch)' [M]"),
        Cmd(":ROUTe:SCAN:SIZE", query="scan_size", source="DAQ970A Programming Guide p.215 'ROUT:SCAN:SIZE?' [M]"),
        Cmd(":TRIGger:SOURce", set="trigger_source",
            params=(Choice("source", options=("BUS", "IMMediate", "EXTernal", "ALARm1", "ALARm2", "ALARm3",
                                              "ALARm4", "TIMer")),),
            query="trigger_source", source=f"{_G} 'TRIGger:SOURce' [M]"),
        Cmd(":TRIGger:COUNt", set="trigger_count",
            params=(Num("count", lo=1, hi=50000, integer=True, specials=("INFinity",)),), query="trigger_count",
            query_params=_LIMIT, source=f"{_G} 'TRIGger:COUNt' [M][D]"),
        Cmd(":INITiate", do="initiate", source=f"{_G} 'INIT' [M]"),
        Cmd(":FETCh", query="fetch", source=f"{_G} 'FETC?' [M]"),
        Cmd(":READ", query="read", source=f"{_G} 'READ?' [M]"),
        Cmd(":ABORt", do="abort", source=f"{_G} 'ABOR' [M]"),
        Cmd(":SYSTem:ERRor[:NEXT]", query="system_error", source="[D] public 34970A driver 'SYST:ERR?'"),
        Cmd(":SYSTem:CTYPe", query="card_type", params=(), query_params=(Num("slot", lo=100, hi=300, integer=True),),
            source=f"{_G} 'SYST:CTYP? <slot>' [M]"),
    ),
    source="34970A/34972A User's Guide; DAQ970A Programming Guide",
)
