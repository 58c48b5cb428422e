"""Keithley 2400 SourceMeter (SCPI).

Sources: [M] 2400 Series SourceMeter User's Manual (2400S-900-01 Rev. K) §14 "<n> numeric value: an NRf number
or DEFault, MINimum, MAXimum", "<NDN> #B/#Q/#H", "<numlist> (-110:-222)" and §18 SCPI Command Reference
(``:SOURce[1]:VOLTage[:LEVel][:IMMediate][:AMPLitude]``, ``…:TRIGgered[:AMPLitude]``,
``:SOURce[1]:VOLTage:PROTection[:LEVel]``, ``:SOURce[1]:CURRent:STARt|STOP``, -221 for MIN/MAX on a lower
range); instruments.md §3.2. [D] labctl's driver, PyMeasure 0.16 ``keithley2400.py`` (long forms throughout:
``:SOURCE:VOLTAGE:RANGE:AUTO``, ``:SENSE:CURRENT:NPLCYCLES``, ``:FORMAT:ELEMENTS VOLTAGE, CURRENT, ...``,
``OUTPUT %d``, ``:SENSE:FUNCTION:ALL``, ``:CALCULATE3:FORMAT MEAN;:CALCULATE3:DATA?;``) and ``buffer.py``
(``:STAT:PRES;*CLS;*SRE 1;:STAT:MEAS:ENAB 512;``, ``:TRAC:FEED SENSE;:TRAC:FEED:CONT NEXT;``), lightlab.

The summary tables print both ``[:SOURce[1]]`` (Table 18-7) and ``[:SENSe[1]]`` as optional roots, so a
spelling such as ``:VOLT:RANG`` fits a source and a sense command alike; which one the 2400 takes is not in the
excerpts read [?]. The tree resolves such spellings to the SOURce command (declared first); ``:CURR:PROT``
has only the SENSe meaning (the compliance), as there is no SOURce CURRent:PROTection in Table 18-7.
The manual's numeric parameters carry no units: a suffix is -138
here [?]. Ranges are the 2400's (±210 V, ±1.05 A). ``:TRACe`` has the alias ``:DATA`` in the manual; only
``:TRACe`` is declared. Long forms of nodes that only short spellings confirm are marked ``confirmed=False``.
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.params import Bool, Choice, Expr, Num, Str
from labctl.sim.scpi.tree import Cmd, Tree

_M = "2400 manual §18"
_LIMIT = (Choice("limit", options=("MINimum", "MAXimum", "DEFault"), optional=True),)
_VOLT = Num("voltage", lo=-210.0, hi=210.0)
_CURR = Num("current", lo=-1.05, hi=1.05)
_SOUR = "[:SOURce[1]]"
_SENS = "[:SENSe[1]]"
_FUNCTIONS = ("VOLTage[:DC]", "CURRent[:DC]", "RESistance")
_ARM = ":ARM[:SEQuence[1]][:LAYer[1]]"
_TRIG = ":TRIGger[:SEQuence[1]]"


def _source(kind: str, level: Num) -> tuple[Cmd, ...]:
    node = f"{_SOUR}:{kind}"
    name = "voltage" if kind == "VOLTage" else "current"
    return (
        Cmd(node + "[:LEVel][:IMMediate][:AMPLitude]", set=f"source_{name}", params=(level,),
            query=f"source_{name}", query_params=_LIMIT, source=f"{_M} [M]; [D] labctl, PyMeasure"),
        Cmd(node + "[:LEVel]:TRIGgered[:AMPLitude]", set=f"source_{name}_triggered", params=(level,),
            query=f"source_{name}_triggered", query_params=_LIMIT, source=f"{_M} [M]"),
        Cmd(node + "[:LEVel]:TRIGgered:SFACtor", set=f"source_{name}_scale",
            params=(Num("factor", lo=-999.9999e18, hi=999.999e18),), query=f"source_{name}_scale",
            source="Table 18-7 ':SFACtor <n>' [M]"),
        Cmd(node + "[:LEVel]:TRIGgered:SFACtor:STATe", set=f"source_{name}_scale_on", params=(Bool("on"),),
            query=f"source_{name}_scale_on", source="Table 18-7 ':SFACtor:STATe <b>' [M]"),
        Cmd(node + ":RANGe", set=f"source_{name}_range",
            params=(Num("range", lo=level.lo, hi=level.hi, specials=("UP", "DOWN")),), query=f"source_{name}_range",
            query_params=_LIMIT, source="Table 18-7 ':RANGe <n>|UP|DOWN' [M]; [D] PyMeasure ':SOURCE:…:RANGE'"),
        Cmd(node + ":RANGe:AUTO", set=f"source_{name}_autorange", params=(Bool("on"),),
            query=f"source_{name}_autorange", source="[D] labctl, PyMeasure"),
        Cmd(node + ":MODE", set=f"source_{name}_mode", params=(Choice("mode", options=("FIXed", "LIST", "SWEep")),),
            query=f"source_{name}_mode", source=f"{_M} 'Select sourcing mode' [M]; [D] labctl"),
        Cmd(node + ":STARt", set=f"sweep_{name}_start", params=(level,), query=f"sweep_{name}_start",
            query_params=_LIMIT, source=f"{_M} [M]"),
        Cmd(node + ":STOP", set=f"sweep_{name}_stop", params=(level,), query=f"sweep_{name}_stop",
            query_params=_LIMIT, source=f"{_M} [M]"),
        Cmd(node + ":STEP", set=f"sweep_{name}_step", params=(level,), query=f"sweep_{name}_step",
            query_params=_LIMIT, source=f"{_M} [M]"),
        Cmd(node + ":SPAN", set=f"sweep_{name}_span", params=(level,), query=f"sweep_{name}_span",
            query_params=_LIMIT, source=f"{_M}", confirmed=False),
        Cmd(node + ":CENTer", set=f"sweep_{name}_center", params=(level,), query=f"sweep_{name}_center",
            query_params=_LIMIT, source=f"{_M}", confirmed=False),
        Cmd(f"{_SOUR}:LIST:{kind}", set=f"list_{name}", params=(Num("values", lo=level.lo, hi=level.hi,
                                                                      repeat=True),),
            query=f"list_{name}", source="instruments.md §3.2 [D] labctl"),
        Cmd(f"{_SOUR}:LIST:{kind}:APPend", set=f"list_{name}_append",
            params=(Num("values", lo=level.lo, hi=level.hi, repeat=True),),
            source="instruments.md §3.2 [D] labctl ':SOUR:LIST:VOLT:APP'"),
        Cmd(f"{_SOUR}:LIST:{kind}:POINts", query=f"list_{name}_points", source=f"{_M}", confirmed=False),
    )


def _sense(kind: str, limit: Num) -> tuple[Cmd, ...]:
    name = {"VOLTage": "voltage", "CURRent": "current", "RESistance": "resistance"}[kind]
    node = f"{_SENS}:{kind}" + ("[:DC]" if kind != "RESistance" else "")
    commands = (
        Cmd(node + ":RANGe[:UPPer]", set=f"sense_{name}_range", params=(limit,), query=f"sense_{name}_range",
            query_params=_LIMIT, source="[D] PyMeasure ':SENSE:…:RANGE'"),
        Cmd(node + ":RANGe:AUTO", set=f"sense_{name}_autorange", params=(Bool("on"),),
            query=f"sense_{name}_autorange", source="[D] labctl, PyMeasure"),
        Cmd(node + ":NPLCycles", set="nplc", params=(Num("nplc", lo=0.01, hi=10.0),), query="nplc",
            query_params=_LIMIT, source="instruments.md §3.2 [D] labctl, PyMeasure ':SENSE:…:NPLCYCLES'"),
    )
    if kind == "RESistance":
        commands += (
            Cmd(node + ":OCOMpensated", set="offset_compensation", params=(Bool("on"),), query="offset_compensation",
                source="Table 18-6 ':RESistance:OCOMpensated <b>' [M]"),
            Cmd(node + ":RANGe:AUTO:ULIMit", set="resistance_autorange_upper", params=(limit,),
                query="resistance_autorange_upper", source="Table 18-6 'ULIMit <n>' [M]; node level [?]",
                confirmed=False),
            Cmd(node + ":RANGe:AUTO:LLIMit", set="resistance_autorange_lower", params=(limit,),
                query="resistance_autorange_lower", source="Table 18-6 'LLIMit <n>' [M]; node level [?]",
                confirmed=False),
        )
    else:
        commands += (
            Cmd(node + ":RANGe:AUTO:ULIMit", query=f"sense_{name}_compliance_range",
                source="Table 18-6 ':ULIMit? Returns compliance range' [M]; node level [?]", confirmed=False),
            Cmd(node + ":RANGe:AUTO:LLIMit", set=f"sense_{name}_autorange_lower", params=(limit,),
                query=f"sense_{name}_autorange_lower", source="Table 18-6 ':LLIMit <n>' [M]; node level [?]",
                confirmed=False),
            Cmd(node + ":PROTection:RSYNchronize", set=f"compliance_{name}_range_sync", params=(Bool("on"),),
                query=f"compliance_{name}_range_sync", source="Table 18-6 ':RSYNchronize <b>' [M]"),
            Cmd(node + ":PROTection[:LEVel]", set=f"compliance_{name}", params=(limit,),
                query=f"compliance_{name}", query_params=_LIMIT,
                source="instruments.md §3.2 [D] labctl, PyMeasure ':SENSE:…:PROTECTION'"),
            Cmd(node + ":PROTection:TRIPped", query=f"compliance_{name}_tripped", source=f"{_M}",
                confirmed=False),
        )
    return commands


TREE = Tree(
    "Keithley 2400",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI, common.TRG, common.OPT)
    + _source("VOLTage", _VOLT) + _source("CURRent", _CURR)
    + _sense("VOLTage", _VOLT) + _sense("CURRent", _CURR) + _sense("RESistance", Num("resistance", lo=0.0,
                                                                                     hi=2.1e8))
    + (
        Cmd(":OUTPut[1][:STATe]", set="output", params=(Bool("on"),), query="output",
            source="instruments.md §3.2; 2400 manual §14 ':OUTPut ON' [M]; [D] PyMeasure 'OUTPUT %d'"),
        Cmd(":OUTPut[1]:ENABle[:STATe]", set="output_enable", params=(Bool("on"),), query="output_enable",
            source="Table 18-4 ':OUTPut:ENABle[:STATe] <b>' [M]"),
        Cmd(":OUTPut[1]:ENABle:TRIPped", query="output_enable_tripped", source="Table 18-4 ':ENABle:TRIPped?' [M]"),
        Cmd(":OUTPut[1]:SMODe", set="output_off_mode",
            params=(Choice("mode", options=("HIMPedance", "NORMal", "ZERO", "GUARd")),), query="output_off_mode",
            source="[D] PyMeasure ':OUTPUT:SMODE HIMP|NORM|ZERO|GUAR'"),
        Cmd(_SOUR + ":FUNCtion[:MODE]", set="source_function",
            params=(Choice("function", options=("VOLTage", "CURRent", "MEMory")),), query="source_function",
            source="instruments.md §3.2 [D] labctl, PyMeasure ':SOURCE:FUNCTION'"),
        Cmd(_SOUR + ":VOLTage:PROTection[:LEVel]", set="voltage_limit", params=(_VOLT,), query="voltage_limit",
            query_params=_LIMIT, source=f"{_M} ':SOURce[1]:VOLTage:PROTection[:LEVel]' [M]"),
        Cmd(_SOUR + ":DELay", set="source_delay_s", params=(Num("delay", lo=0.0, hi=9999.999),),
            query="source_delay_s", query_params=_LIMIT, source="[D] PyMeasure ':SOURCE:DELAY'"),
        Cmd(_SOUR + ":DELay:AUTO", set="source_delay_auto", params=(Bool("on"),), query="source_delay_auto",
            source="[D] PyMeasure ':SOURCE:DELAY:AUTO'"),
        Cmd(_SOUR + ":CLEar[:IMMediate]", do="source_clear", source=f"{_M}", confirmed=False),
        Cmd(_SOUR + ":CLEar:AUTO", set="auto_output_off", params=(Bool("on"),), query="auto_output_off",
            source="[D] PyMeasure ':SOURCE:CLEAR:AUTO'"),
        Cmd(_SOUR + ":CLEar:AUTO:MODE", set="auto_output_off_mode",
            params=(Choice("mode", options=("ALWays", "TCOunt")),), query="auto_output_off_mode",
            source=f"{_M} p. 18-72 ':SOURce[1]:CLEar:AUTO:MODE ALWAYS|TCOunt' [M]; ALWays short form [?]"),
        Cmd(_SENS + ":CURRent[:DC]:RANGe:HOLDoff", set="range_holdoff", params=(Bool("on"),), query="range_holdoff",
            source="Table 18-6 ':HOLDoff <b>' (current range holdoff) [M]; node level [?]", confirmed=False),
        Cmd(_SENS + ":CURRent[:DC]:RANGe:HOLDoff:DELay", set="range_holdoff_delay_s",
            params=(Num("delay", lo=0.0, hi=999.9999),), query="range_holdoff_delay_s",
            source="Table 18-6 ':DELay <NRf> 0 to 999.9999' [M]; node level [?]", confirmed=False),
        Cmd(_SOUR + ":SWEep:SPACing", set="sweep_spacing", params=(Choice("spacing", options=("LINear",
                                                                                            "LOGarithmic")),),
            query="sweep_spacing", source=f"{_M} (LINear|LOGarithmic) [M]"),
        Cmd(_SOUR + ":SWEep:POINts", set="sweep_points", params=(Num("points", lo=2, hi=2500, integer=True),),
            query="sweep_points", query_params=_LIMIT, source=f"{_M} ':POINts' [M]"),
        Cmd(_SOUR + ":SWEep:RANGing", set="sweep_ranging", params=(Choice("ranging", options=("BEST", "AUTO",
                                                                                             "FIXed")),),
            query="sweep_ranging", source=f"{_M}", confirmed=False),
        Cmd(_SOUR + ":SWEep:DIRection", set="sweep_direction", params=(Choice("direction", options=("UP",
                                                                                                 "DOWn")),),
            query="sweep_direction", source=f"{_M}", confirmed=False),
        Cmd(_SENS + ":FUNCtion[:ON]", set="sense_functions", params=(Str("function", paths=_FUNCTIONS,
                                                                             repeat=True),),
            query="sense_functions", source="instruments.md §3.2 [D] labctl \":SENS:FUNC 'CURR'\""),
        Cmd(_SENS + ":FUNCtion:OFF", set="sense_functions_off", params=(Str("function", paths=_FUNCTIONS,
                                                                             repeat=True),),
            query="sense_functions_off", source=f"{_M}", confirmed=False),
        Cmd(_SENS + ":FUNCtion[:ON]:ALL", do="sense_all_on", source="[D] PyMeasure ':SENSE:FUNCTION:ALL'"),
        Cmd(_SENS + ":FUNCtion:OFF:ALL", do="sense_all_off", source=f"{_M}", confirmed=False),
        Cmd(_SENS + ":FUNCtion:CONCurrent", set="concurrent", params=(Bool("on"),), query="concurrent",
            source=f"{_M}", confirmed=False),
        Cmd(_SENS + ":RESistance:MODE", set="resistance_mode", params=(Choice("mode", options=("MANual",
                                                                                              "AUTO")),),
            query="resistance_mode", source="[D] PyMeasure ':SENSE:RESISTANCE:MODE', ':SENS:RES:MODE MAN'"),
        Cmd(_SENS + ":AVERage[:STATe]", set="filter", params=(Bool("on"),), query="filter",
            source="[D] PyMeasure ':SENSE:AVERAGE'"),
        Cmd(_SENS + ":AVERage:TCONtrol", set="filter_type", params=(Choice("type", options=("REPeat",
                                                                                           "MOVing")),),
            query="filter_type", source="[D] PyMeasure ':SENSE:AVERAGE:TCONTROL'"),
        Cmd(_SENS + ":AVERage:COUNt", set="filter_count", params=(Num("count", lo=1, hi=100, integer=True),),
            query="filter_count", query_params=_LIMIT, source="[D] PyMeasure ':SENSE:AVERAGE:COUNT'"),
        Cmd(":FORMat[:DATA]", set="data_format",
            params=(Choice("type", options=("ASCii", "REAL", "SREal")), Num("length", integer=True, lo=32, hi=32,
                                                                            optional=True)),
            query="data_format", source="Table 18-3 'ASCii, REAL, 32 or SREal' [M]; [D] PyMeasure ':FORM:DATA ASCII'"),
        Cmd(":FORMat:ELEMents[:SENSe[1]]", set="elements",
            params=(Choice("element", options=("VOLTage", "CURRent", "RESistance", "TIME", "STATus"),
                           repeat=True),),
            query="elements", source="instruments.md §3.2 [D] labctl ':FORM:ELEM CURR', PyMeasure"),
        Cmd(":FORMat:SREGister", set="status_register_format",
            params=(Choice("format", options=("ASCii", "HEXadecimal", "OCTal", "BINary")),),
            query="status_register_format", source="Table 18-3 [M]"),
        Cmd(":FORMat:ELEMents:CALCulate", set="calc_elements",
            params=(Choice("element", options=("CALCulate", "TIME", "STATus"), repeat=True),), query="calc_elements",
            source="Table 18-3 [M]"),
        Cmd(":FORMat:SOURce2", set="source2_format",
            params=(Choice("format", options=("ASCii", "HEXadecimal", "OCTal", "BINary")),), query="source2_format",
            source="Table 18-3 [M]"),
        Cmd(":FORMat:BORDer", set="byte_order", params=(Choice("order", options=("NORMal", "SWAPped")),),
            query="byte_order", source="Table 18-3 (NORMal|SWAPped) [M]"),
        Cmd(":READ", query="read", source="instruments.md §3.2 [D] labctl, PyMeasure"),
        Cmd(":FETCh", query="fetch", source=f"{_M}", confirmed=False),
        Cmd(":MEASure", query="measure", source=f"{_M} ':MEASure[:<function>]?'", confirmed=False),
        Cmd(":MEASure:VOLTage[:DC]", query="measure_voltage", source="instruments.md §3.2 [D] PyMeasure"),
        Cmd(":MEASure:CURRent[:DC]", query="measure_current", source="instruments.md §3.2 [D] PyMeasure"),
        Cmd(":MEASure:RESistance", query="measure_resistance", source="[D] PyMeasure ':MEASURE:RESISTANCE?'"),
        Cmd(":CONFigure:VOLTage[:DC]", do="configure_voltage", source=f"{_M}", confirmed=False),
        Cmd(":CONFigure:CURRent[:DC]", do="configure_current", source=f"{_M}", confirmed=False),
        Cmd(":CONFigure:RESistance", do="configure_resistance", source=f"{_M}", confirmed=False),
        Cmd(":CONFigure", query="configuration", source=f"{_M}", confirmed=False),
        Cmd(":INITiate[:IMMediate]", do="initiate", source="instruments.md §3.2 [D] PyMeasure buffer ':INIT'"),
        Cmd(":ABORt", do="abort", source="[D] PyMeasure ':ABORT', ':ABOR'"),
        Cmd(_TRIG + ":COUNt", set="trigger_count", params=(Num("count", lo=1, hi=2500, integer=True),),
            query="trigger_count", query_params=_LIMIT, source="instruments.md §3.2 [D] labctl, PyMeasure"),
        Cmd(_TRIG + ":DELay", set="trigger_delay_s", params=(Num("delay", lo=0.0, hi=999.9999),),
            query="trigger_delay_s", query_params=_LIMIT, source="[D] PyMeasure ':TRIGGER:DELAY'"),
        Cmd(_TRIG + ":SOURce", set="trigger_source", params=(Choice("source", options=("IMMediate", "TLINk")),),
            query="trigger_source", source="2400 manual p. 18-119 'only IMMediate and TLINk are available as "
                                            "trigger layer control sources' [M]; [D] PyMeasure ':TRIG:SOUR TLIN'"),
        Cmd(_TRIG + ":OUTPut", set="trigger_output",
            params=(Choice("event", options=("SOURce", "DELay", "SENSe", "NONE"), repeat=True),),
            query="trigger_output", source="[D] PyMeasure ':TRIGGER:OUTPUT', ':TRIG:OUTP NONE'"),
        Cmd(_TRIG + ":ILINe", set="trigger_input_line", params=(Num("line", lo=1, hi=4, integer=True),),
            query="trigger_input_line", source="[D] PyMeasure ':TRIGGER:ILINE'"),
        Cmd(_TRIG + ":OLINe", set="trigger_output_line", params=(Num("line", lo=1, hi=4, integer=True),),
            query="trigger_output_line", source="[D] PyMeasure ':TRIGGER:OLINE'"),
        Cmd(":TRIGger:CLEar", do="trigger_clear", source="[D] PyMeasure ':TRIGGER:CLEAR'"),
        Cmd(_ARM + ":COUNt", set="arm_count", params=(Num("count", lo=1, hi=2500, integer=True,
                                                           specials=("INFinite",)),),
            query="arm_count", query_params=_LIMIT, source="[D] PyMeasure ':ARM:COUNT'"),
        Cmd(_ARM + ":SOURce", set="arm_source",
            params=(Choice("source", options=("IMMediate", "TLINk", "TIMer", "MANual", "BUS", "NSTest", "PSTest",
                                              "BSTest")),),
            query="arm_source", source="2400 manual p. 18-119 (IMMediate, TLINk, TIMer, MANual, BUS, NSTest, "
                                        "PSTest, BSTest) [M]; [D] PyMeasure ':ARM:SOURCE IMM|TLIN|TIM|MAN|BUS'"),
        Cmd(_ARM + ":TIMer", set="arm_timer_s", params=(Num("interval", lo=0.001, hi=99999.99),),
            query="arm_timer_s", query_params=_LIMIT, source="2400 manual §14 ':ARM:TIMer 0.1' [M]"),
        Cmd(_ARM + ":OUTPut", set="arm_output",
            params=(Choice("event", options=("TENTer", "TEXit", "NONE"), repeat=True),), query="arm_output",
            source="[D] PyMeasure ':ARM:OUTPUT TENT|TEX|NONE'"),
        Cmd(_ARM + ":ILINe", set="arm_input_line", params=(Num("line", lo=1, hi=4, integer=True),),
            query="arm_input_line", source="[D] PyMeasure ':ARM:ILINE'"),
        Cmd(_ARM + ":OLINe", set="arm_output_line", params=(Num("line", lo=1, hi=4, integer=True),),
            query="arm_output_line", source="[D] PyMeasure ':ARM:OLINE'"),
        Cmd(":SYSTem:ERRor[:NEXT]", query="system_error", source="instruments.md §3.2 [D]"),
        Cmd(":SYSTem:AZERo[:STATe]", set="auto_zero",
            params=(Choice("state", options=("ON", "OFF", "ONCE"), codes=((0, "OFF"), (1, "ON"))),),
            query="auto_zero", source="[D] PyMeasure ':SYSTEM:AZERO:STATE ON|OFF|ONCE'"),
        Cmd(":SYSTem:RSENse", set="remote_sense", params=(Bool("on"),), query="remote_sense",
            source="[D] PyMeasure ':SYSTEM:RSENSE'"),
        Cmd(":SYSTem:LFRequency", set="line_frequency_hz", params=(Num("frequency", lo=50, hi=60, integer=True),),
            query="line_frequency_hz", source="[D] PyMeasure ':SYSTEM:LFREQUENCY 50|60'"),
        Cmd(":SYSTem:LFRequency:AUTO", set="line_frequency_auto", params=(Bool("on"),), query="line_frequency_auto",
            source="[D] PyMeasure ':SYSTEM:LFREQUENCY:AUTO'"),
        Cmd(":SYSTem:BEEPer[:IMMediate]", do="beep",
            params=(Num("frequency", lo=65.0, hi=2e6), Num("duration", lo=0.0, hi=7.9)),
            source="[D] PyMeasure ':SYST:BEEP <f>, <t>'"),
        Cmd(":SYSTem:BEEPer:STATe", set="beeper", params=(Bool("on"),), query="beeper", source=f"{_M}",
            confirmed=False),
        Cmd(":SYSTem:PRESet", do="preset", source=f"{_M}", confirmed=False),
        Cmd(":SYSTem:TIME:RESet", do="time_reset", source=f"{_M}", confirmed=False),
        Cmd(":SYSTem:VERSion", query="scpi_version", source="SCPI-99 mandatory", confirmed=False),
        Cmd(":ROUTe:TERMinals", set="terminals", params=(Choice("terminals", options=("FRONt", "REAR")),),
            query="terminals", source="[D] PyMeasure ':ROUTE:TERMINALS FRON|REAR'"),
        Cmd(":DISPlay:ENABle", set="display", params=(Bool("on"),), query="display",
            source="[D] PyMeasure ':DISPLAY:ENABLE'"),
        Cmd(":TRACe:CLEar", do="buffer_clear", source="instruments.md §3.2 [D] PyMeasure ':TRAC:CLEAR'"),
        Cmd(":TRACe:POINts", set="buffer_points", params=(Num("points", lo=1, hi=2500, integer=True),),
            query="buffer_points", query_params=_LIMIT,
            source="2400 manual p. 18-115 ':TRACe:POINts <n>' 1 to 2500 [M]; [D] PyMeasure ':TRAC:POIN'"),
        Cmd(":TRACe:FEED", set="buffer_feed",
            params=(Choice("feed", options=("SENSe", "SENSe1", "CALCulate", "CALCulate1", "CALCulate2")),),
            query="buffer_feed", source="2400 manual p. 18-115 SENSe[1]|CALCulate[1]|CALCulate2 [M]; [D] PyMeasure"),
        Cmd(":TRACe:FEED:CONTrol", set="buffer_control", params=(Choice("control", options=("NEVer", "NEXT")),),
            query="buffer_control", source="2400 manual p. 18-115 'NEXT fills buffer and stops', NEVer [M]; "
                                            "[D] PyMeasure ':TRAC:FEED:CONT NEXT|NEV'"),
        Cmd(":TRACe:DATA", query="buffer_data", source="instruments.md §3.2 [D] PyMeasure ':TRAC:DATA?'"),
        Cmd(":CALCulate3:FORMat", set="statistic",
            params=(Choice("statistic", options=("MEAN", "SDEViation", "MAXimum", "MINimum", "PKPK")),),
            query="statistic", source="[D] PyMeasure ':CALCULATE3:FORMAT MEAN|MAX|MIN|SDEVIATION'"),
        Cmd(":CALCulate3:DATA", query="statistic_data", source="[D] PyMeasure ':CALCULATE3:DATA?'"),
        Cmd(":STATus:PRESet", do="status_preset", source="[D] PyMeasure buffer ':STAT:PRES'"),
        Cmd(":STATus:MEASurement[:EVENt]", query="measurement_event", source=f"{_M}", confirmed=False),
        Cmd(":STATus:MEASurement:ENABle", set="measurement_enable",
            params=(Num("mask", lo=0, hi=65535, integer=True, keywords=False),), query="measurement_enable",
            source="[D] PyMeasure buffer ':STAT:MEAS:ENAB 512'"),
        Cmd(":STATus:MEASurement:CONDition", query="measurement_condition", source=f"{_M}", confirmed=False),
        Cmd(":STATus:OPERation[:EVENt]", query="operation_event", source=f"{_M}", confirmed=False),
        Cmd(":STATus:OPERation:ENABle", set="operation_enable",
            params=(Num("mask", lo=0, hi=65535, integer=True, keywords=False),), query="operation_enable",
            source=f"{_M}", confirmed=False),
        Cmd(":STATus:QUEStionable[:EVENt]", query="questionable_event", source=f"{_M}", confirmed=False),
        Cmd(":STATus:QUEStionable:ENABle", set="questionable_enable",
            params=(Num("mask", lo=0, hi=65535, integer=True, keywords=False),), query="questionable_enable",
            source=f"{_M}", confirmed=False),
        Cmd(":STATus:QUEue[:NEXT]", query="status_queue", source=f"{_M}", confirmed=False),
        Cmd(":STATus:QUEue:ENABle", set="status_queue_enable", params=(Expr("list"),), query="status_queue_enable",
            source="2400 manual §14 ':STATus:QUEue:ENABle (-110:-222)' [M]"),
    ),
    source="Keithley 2400 Series SourceMeter User's Manual §14, §18; instruments.md §3.2",
)
