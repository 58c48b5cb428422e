"""The Keysight tunable-laser tree (SOURce/TRIGger of the laser slot), shared by the 8164B slot-0 laser and the
N7776C/N7778C.

Sources: [M] 8163A/B, 8164A/B & 8166A/B Mainframes Programming Guide (slot/channel numbering: "if you do not
specify a slot or channel number, the lowest possible number is used": slot 0 on the 8164B, channel 1),
N777xC Series Programming Guide ch. 4 (``:SOURce0:AM:STATe?``, ``:SOURce0:READout:DATA? LLOG|PMAX``,
``:SOURce0:READout:POINts? LLOGging|PMAX``; the parameter is spelled LLOGging, so LLOG is its short form) and its
Units table; instruments.md §1.1-1.3 [M][D]. [D] public drivers: labctl's own, PyMeasure 0.16
``keysightN7776C.py`` (``sour0:wav %fnm``, ``sour0:wav:swe:speed``, ``sour0:read:points? llog``,
``sour0:wav:swe:step:next``, ``:LOCK %g,1234``), LabExT ``LaserMainframeKeysight.py`` (``LOCK 0,<pin>``,
``trig:conf?``, ``:wav:swe:start? min``, ``:wav:swe:pmax? <a>nm,<b>nm``), autosweep ``KeysightN777C.py``
(``:sour0:wav:corr:ara``, ``:stat0:oper?``).

Long forms not printed in the excerpts read are reconstructed from the short forms the drivers send and the
SCPI case convention; each such command says ``confirmed=False`` (the short form is confirmed, the long form is
not). Ranges are the family envelope; the installed laser's own limits (``:SOUR0:WAV? MIN|MAX``) are the
physics model's to enforce.
"""

from __future__ import annotations

from labctl.sim.scpi.params import Bool, Choice, Num
from labctl.sim.scpi.tree import Cmd
from labctl.sim.scpi.trees.keysight_units import (
    DBM,
    METRE,
    METRE_PER_SECOND,
    SECOND,
    WATT,
)

_LIMIT = (Choice("limit", options=("MINimum", "MAXimum", "DEFault"), optional=True),)
_PG = "816x PG / N777xC PG"


def laser_commands(source: str, trigger: str, output: str, *, wavelength_m: tuple[float, float],
                   mainframe: bool) -> tuple[Cmd, ...]:
    """The laser commands under node prefixes ``source`` (e.g. ``[:SOURce[n]][:CHANnel[m]]``), ``trigger`` and
    ``output``. ``wavelength_m`` is the envelope accepted by the parser (-222 outside). ``mainframe`` adds the 816x
    trigger routing ``:TRIGger:CONFiguration`` (LabExT's 816x class sends it; no N777xC source does, and labctl's
    driver never sends it to a stand-alone laser: not in that tree [?])."""
    lo, hi = wavelength_m
    wavelength = Num("wavelength", units=(METRE,), bare_unit="M", lo=lo, hi=hi)
    s, sweep = source, source + ":WAVelength:SWEep"
    return (
        Cmd(s + ":WAVelength[:CW|:FIXed]", set="wavelength_m", params=(wavelength,), query="wavelength_m",
            query_params=_LIMIT, source=f"{_PG}: WAVelength[:CW]; [D] all drivers"),
        Cmd(s + ":POWer[:LEVel][:IMMediate][:AMPLitude]", set="power",
            params=(Num("power", units=(WATT, DBM)),), query="power", query_params=_LIMIT,
            source=f"{_PG}: POWer; bare value in the :POW:UNIT unit [D labctl, PyMeasure ' mW'/' dBm']"),
        Cmd(s + ":POWer:UNIT", set="power_unit",
            params=(Choice("unit", options=("DBM", "Watt"), codes=((0, "DBM"), (1, "Watt"))),), query="power_unit",
            source=f"{_PG}: POWer:UNIT 0|1|DBM|Watt [D]"),
        Cmd(s + ":POWer:STATe", set="output", params=(Bool("on"),), query="output",
            source=f"{_PG}: POWer:STATe (laser current on/off) [D]"),
        Cmd(output + "[:STATe]", set="output", params=(Bool("on"),), query="output", confirmed=False,
            source="[D] public scripts send OUTP0:STAT 1 to Keysight lasers; not in the excerpts read"),
        Cmd(sweep + "[:STATe]", set="sweep_state",
            params=(Choice("state", options=("STOP", "STARt", "PAUSe", "CONTinue"),
                           codes=((0, "STOP"), (1, "STARt"), (2, "PAUSe"), (3, "CONTinue"))),),
            query="sweep_state", source=f"{_PG}: WAVelength:SWEep[:STATe] 0|1|2|3 [D]"),
        Cmd(sweep + ":MODE", set="sweep_mode",
            params=(Choice("mode", options=("STEPped", "MANual", "CONTinuous")),), query="sweep_mode",
            source=f"{_PG}: WAVelength:SWEep:MODE STEP|MAN|CONT [D]"),
        Cmd(sweep + ":STARt", set="sweep_start_m", params=(wavelength,), query="sweep_start_m", query_params=_LIMIT,
            source="[D] labctl, PyMeasure, LabExT (':wav:swe:start? min')"),
        Cmd(sweep + ":STOP", set="sweep_stop_m", params=(wavelength,), query="sweep_stop_m", query_params=_LIMIT,
            source="[D] labctl, PyMeasure, LabExT"),
        Cmd(sweep + ":STEP[:WIDTh]", set="sweep_step_m",
            params=(Num("step", units=(METRE,), bare_unit="M", lo=0.0, hi=hi - lo),), query="sweep_step_m",
            query_params=_LIMIT, source="[D] labctl, PyMeasure, LabExT (':wav:swe:step <x>pm')"),
        Cmd(sweep + ":SPEed", set="sweep_speed_m_per_s",
            params=(Num("speed", units=(METRE_PER_SECOND,), bare_unit="M/S", lo=0.0, hi=1e-6),),
            query="sweep_speed_m_per_s", query_params=_LIMIT,
            source="[D] labctl ('NM/S'), PyMeasure ('speed %fnm/s'), LabExT; bare value in m/s [?]"),
        Cmd(sweep + ":CYCLes", set="sweep_cycles", params=(Num("cycles", lo=0, hi=65535, integer=True),),
            query="sweep_cycles", source="[D] labctl, pyoctal; instruments.md §1.1"),
        Cmd(sweep + ":DWELl", set="sweep_dwell_s", params=(Num("dwell", units=(SECOND,), bare_unit="S", lo=0.0),),
            query="sweep_dwell_s", source="instruments.md §1.1 [D pymeasure, pyoctal]"),
        Cmd(sweep + ":REPeat", set="sweep_repeat", params=(Choice("repeat", options=("ONEWay", "TWOWay")),),
            query="sweep_repeat", source="[D] PyMeasure 'sour0:wav:swe:rep ONEW|TWOW'", confirmed=False),
        Cmd(sweep + ":LLOGging", set="lambda_logging", params=(Bool("on"),), query="lambda_logging",
            source="[M] N777xC PG refers to :WAVelength:SWEep:LLOGging; [D] all drivers"),
        Cmd(sweep + ":CHECkparams", query="sweep_check", confirmed=False,
            source="[D] ':wav:swe:chec?' (labctl, PyMeasure, LabExT); long form [?]"),
        Cmd(sweep + ":EXPectedtriggernum", query="sweep_expected_points", confirmed=False,
            source="[D] ':wav:swe:exp?' (labctl, LabExT); long form [?]"),
        Cmd(sweep + ":PMAX", query="sweep_power_max",
            query_params=(Num("start", units=(METRE,), bare_unit="M", lo=lo, hi=hi),
                          Num("stop", units=(METRE,), bare_unit="M", lo=lo, hi=hi)),
            source="[D] labctl, LabExT ':wav:swe:pmax? <a>nm,<b>nm'"),
        Cmd(sweep + ":FLAG", query="sweep_flag", source="[D] labctl, LabExT ':wav:swe:flag?'"),
        Cmd(sweep + ":SOFTtrigger", do="sweep_software_trigger", confirmed=False,
            source="[D] ':wav:swe:soft' (labctl, LabExT); long form [?]"),
        Cmd(sweep + ":STEP:NEXT", do="sweep_step_next", source="[D] PyMeasure 'sour0:wav:swe:step:next'"),
        Cmd(sweep + ":STEP:PREVious", do="sweep_step_previous", source="[D] PyMeasure 'sour0:wav:swe:step:prev'"),
        Cmd(s + ":WAVelength:CORRection:ARA", do="realign", source="[D] autosweep ':sour0:wav:corr:ara'"),
        Cmd(s + ":AM:STATe", set="am_state", params=(Bool("on"),), query="am_state",
            source="[M] N777xC PG ch. 4 ':SOURce0:AM:STATe?'"),
        Cmd(s + ":READout:DATA", query="readout_data",
            query_params=(Choice("what", options=("LLOGging", "PMAX")),),
            source="[M] N777xC PG ch. 4 ':SOURce0:READout:DATA? LLOG|PMAX' (binary, float64 LE)"),
        Cmd(s + ":READout:POINts", query="readout_points",
            query_params=(Choice("what", options=("LLOGging", "PMAX")),),
            source="[M] N777xC PG ch. 4 ':SOURce0:READout:POINts? LLOGging|PMAX'"),
        Cmd(trigger + ":INPut", set="trigger_input",
            params=(Choice("response", options=("IGNore", "NEXTstep", "SWStart", "SMEasure", "CMEasure",
                                                "MMEasure")),),
            query="trigger_input", confirmed=False,
            source="[D] IGN|NEXT|SWS (labctl, PyMeasure, LabExT), SME|CME (LabExT meters), IGNORE/SMEASURE long "
                   "forms in public scripts; NEXTstep/SWStart/MMEasure long forms [?]"),
        Cmd(trigger + ":OUTPut", set="trigger_output",
            params=(Choice("event", options=("DISabled", "STFinished", "SWFinished", "SWSTarted", "AVGover",
                                             "MEASure", "MODulation")),),
            query="trigger_output", confirmed=False,
            source="[D] DIS|STF|SWF|SWST (labctl, PyMeasure), STFINISHED in public scripts; AVG/MEAS meter "
                   "events and other long forms [?]"),
    ) + ((
        Cmd(":TRIGger:CONFiguration", set="trigger_configuration",
            params=(Choice("mode", options=("DISabled", "DEFault", "PASSthrough", "LOOPback")),),
            query="trigger_configuration", confirmed=False,
            source="[D] ':TRIG:CONF LOOP|DEF|PASS|DIS' (labctl 8164B, LabExT 816x 'trig:conf?'); long forms [?]"),
    ) if mainframe else ()) + (
        Cmd(":LOCK", set="lock", params=(Bool("locked"), Num("pin", lo=0, hi=9999, integer=True, keywords=False)),
            query="lock", source="[D] ':LOCK 0,1234' (labctl, PyMeasure, LabExT 'LOCK 0,<pin>')"),
    )


def status_commands() -> tuple[Cmd, ...]:
    """SYSTem/STATus nodes of the Keysight photonic instruments."""
    return (
        Cmd(":SYSTem:ERRor[:NEXT]", query="system_error", source="[M] 816x PG; [D] all drivers ':SYST:ERR?'"),
        Cmd(":STATus[n]:OPERation[:EVENt]", query="operation_event",
            source="[M] 816x PG ':STATusn:OPERation[:EVENt]?'; [D] autosweep ':stat0:oper?'"),
        Cmd(":STATus[n]:OPERation:CONDition", query="operation_condition",
            source="[M] 816x PG ':STATusn:OPERation:CONDition?'"),
        Cmd(":STATus[n]:OPERation:ENABle", set="operation_enable",
            params=(Num("mask", lo=0, hi=32767, integer=True, keywords=False),), query="operation_enable",
            source="[M] 816x PG ':STATusn:OPERation:ENABle'"),
        Cmd(":STATus[n]:QUEStionable[:EVENt]", query="questionable_event",
            source="[M] 816x PG (QUEStionable register set)"),
        Cmd(":STATus[n]:QUEStionable:CONDition", query="questionable_condition",
            source="[M] 816x PG ':stat1:ques:cond?'"),
        Cmd(":STATus[n]:QUEStionable:ENABle", set="questionable_enable",
            params=(Num("mask", lo=0, hi=32767, integer=True, keywords=False),), query="questionable_enable",
            source="[M] 816x PG ':STATusn:QUEStionable:ENABle'"),
        Cmd(":STATus:PRESet", do="status_preset", source="SCPI-99 mandatory STATus:PRESet", confirmed=False),
    )
