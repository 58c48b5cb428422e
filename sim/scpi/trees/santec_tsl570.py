"""Santec TSL-570 (and TSL-770) in the SCPI command set (``:SYST:COMM:COD 1``).

Sources: instruments.md §1.5 [D: santec-corporation/python-samples ``tsl_instrument.py``, PyMeasure
``santec/tsl570.py``, ``tsl500series.py``]; QMI 0.54 ``instruments/santec/tsl_570.py`` [D] (``:WAV:MIN?``,
``:WAV:FREQ``, ``:WAV:FREQ:SWE:STAR``, ``:WAV:SWE:STAT``, ``:WAV:SWE:STAT:REP``, ``:TRIG:INP:SOFT``,
``:TRIG:OUTP:SETT``, ``:READout:DATa?``, ``:COHC``, ``:SPEC:SHUT``, ``:SPECial:REBoot``); labctl's driver.
In SCPI mode a bare wavelength is metres and a bare frequency hertz; unit suffixes are accepted (which spellings
is not documented in the sources read: the generic 488.2 set is used [?]). The sweep speed is in nm/s with no
suffix (the driver's reading of the manual; a suffix is -138 here [?]). Long forms not seen in any source are
reconstructed from the short forms and marked ``confirmed=False``.
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.params import Bool, Num
from labctl.sim.scpi.tree import Cmd, Tree
from labctl.sim.scpi.units import Unit

METRE = Unit("M")
HERTZ = Unit("HZ")
DBM = Unit("DBM")
WATT = Unit("W")
DECIBEL = Unit("DB")
SECOND = Unit("S")
_WAV = Num("wavelength", units=(METRE,), bare_unit="M", lo=1.2e-6, hi=1.7e-6)
_FREQ = Num("frequency", units=(HERTZ,), bare_unit="HZ", lo=176e12, hi=250e12)
_BIT = Num("flag", lo=0, hi=1, integer=True, keywords=False)
_S = "instruments.md §1.5"

TREE = Tree(
    "Santec TSL-570",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI)
    + (
        Cmd(":WAVelength", set="wavelength_m", params=(_WAV,), query="wavelength_m", source=f"{_S} [D]"),
        Cmd(":WAVelength:MINimum", query="wavelength_min_m", source="[D] QMI, labctl ':WAV:MIN?'"),
        Cmd(":WAVelength:MAXimum", query="wavelength_max_m", source="[D] QMI, labctl ':WAV:MAX?'"),
        Cmd(":WAVelength:UNIT", set="wavelength_unit", params=(_BIT,), query="wavelength_unit",
            source=f"{_S} ':WAV:UNIT 0|1' [D]"),
        Cmd(":WAVelength:FINetuning", set="fine_tuning", params=(Num("fine", lo=-100.0, hi=100.0),),
            query="fine_tuning", confirmed=False, source=f"{_S} ':WAV:FIN' [D QMI]; long form [?]"),
        Cmd(":WAVelength:FINetuning:DISable", do="fine_tuning_off", confirmed=False,
            source=f"{_S} ':WAV:FIN:DIS' [D QMI]; long forms [?]"),
        Cmd(":WAVelength:FREQuency", set="frequency_hz", params=(_FREQ,), query="frequency_hz",
            source="[D] QMI ':WAV:FREQ'"),
        Cmd(":WAVelength:FREQuency:MINimum", query="frequency_min_hz", source="[D] QMI ':WAV:FREQ:MIN?'"),
        Cmd(":WAVelength:FREQuency:MAXimum", query="frequency_max_hz", source="[D] QMI ':WAV:FREQ:MAX?'"),
        Cmd(":WAVelength:FREQuency:SWEep:STARt", set="sweep_start_hz", params=(_FREQ,), query="sweep_start_hz",
            source="[D] QMI ':WAV:FREQ:SWE:STAR'"),
        Cmd(":WAVelength:FREQuency:SWEep:STOP", set="sweep_stop_hz", params=(_FREQ,), query="sweep_stop_hz",
            source="[D] QMI ':WAV:FREQ:SWE:STOP'"),
        Cmd(":FREQuency", set="frequency_hz", params=(_FREQ,), query="frequency_hz", confirmed=False,
            source=f"{_S} ':FREQ <v>' [?] (QMI uses :WAV:FREQ)"),
        Cmd(":POWer[:LEVel]", set="power", params=(Num("power", units=(DBM, WATT)),), query="power",
            source=f"{_S} ':POW' in the :POW:UNIT unit [D]; [:LEVel] [?]"),
        Cmd(":POWer:ACTual[:LEVel]", query="power_monitor", source=f"{_S} ':POW:ACT?' [D]"),
        Cmd(":POWer:UNIT", set="power_unit", params=(_BIT,), query="power_unit", source=f"{_S} ':POW:UNIT 0|1' [D]"),
        Cmd(":POWer:STATe", set="output", params=(Bool("on"),), query="output", source=f"{_S} ':POW:STAT' [D]"),
        Cmd(":POWer:SHUTter", set="shutter_closed", params=(Bool("closed"),), query="shutter_closed",
            source=f"{_S} ':POW:SHUT 0|1' [D]"),
        Cmd(":POWer:ATTenuation", set="attenuation_db",
            params=(Num("attenuation", units=(DECIBEL,), bare_unit="DB", lo=0.0, hi=30.0),),
            query="attenuation_db", source=f"{_S} ':POW:ATT <0..30>' [D]"),
        Cmd(":POWer:ATTenuation:AUTo", set="attenuation_auto", params=(Bool("on"),), query="attenuation_auto",
            source=f"{_S} ':POW:ATT:AUT' [D]"),
        Cmd(":WAVelength:SWEep:STARt", set="sweep_start_m", params=(_WAV,), query="sweep_start_m",
            source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:STOP", set="sweep_stop_m", params=(_WAV,), query="sweep_stop_m", source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:STEP", set="sweep_step_m",
            params=(Num("step", units=(METRE,), bare_unit="M", lo=0.0, hi=5e-7),), query="sweep_step_m",
            source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:MODe", set="sweep_mode", params=(Num("mode", lo=0, hi=3, integer=True),),
            query="sweep_mode", source=f"{_S} ':WAV:SWE:MOD 0..3' [D]"),
        Cmd(":WAVelength:SWEep:SPEed", set="sweep_speed_nm_per_s", params=(Num("speed", lo=0.0, hi=200.0),),
            query="sweep_speed_nm_per_s", source=f"{_S} ':WAV:SWE:SPE <nm/s>' [D]"),
        Cmd(":WAVelength:SWEep:DWELl", set="sweep_dwell_s",
            params=(Num("dwell", units=(SECOND,), bare_unit="S", lo=0.0, hi=999.9),), query="sweep_dwell_s",
            source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:DELay", set="sweep_delay_s",
            params=(Num("delay", units=(SECOND,), bare_unit="S", lo=0.0, hi=999.9),), query="sweep_delay_s",
            source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:CYCLes", set="sweep_cycles", params=(Num("cycles", lo=0, hi=999, integer=True),),
            query="sweep_cycles", source=f"{_S} [D]"),
        Cmd(":WAVelength:SWEep:COUNt", query="sweep_count", source=f"{_S} ':WAV:SWE:COUN?' [D]"),
        Cmd(":WAVelength:SWEep[:STATe]", set="sweep_state", params=(Num("state", lo=0, hi=1, integer=True),),
            query="sweep_status", source=f"{_S} ':WAV:SWE 1|0', ':WAV:SWE?' [D]; QMI ':WAV:SWE:STAT'"),
        Cmd(":WAVelength:SWEep[:STATe]:REPeat", do="sweep_repeat",
            source=f"{_S} ':WAV:SWE:REP'; QMI ':WAV:SWE:STAT:REP' [D]"),
        Cmd(":WAVelength:SWEep:SOFTtrigger", do="sweep_software_trigger", confirmed=False,
            source=f"{_S} ':WAV:SWE:SOFT' [D]; long form [?]"),
        Cmd(":WAVelength:SWEep:RANGe:MINimum", query="sweep_range_min_m", source=f"{_S} [D] labctl"),
        Cmd(":WAVelength:SWEep:RANGe:MAXimum", query="sweep_range_max_m", source=f"{_S} [D] labctl"),
        Cmd(":TRIGger:INPut:EXTernal", set="trigger_external", params=(Bool("on"),), query="trigger_external",
            source=f"{_S} [D]"),
        Cmd(":TRIGger:INPut:ACTive", set="trigger_active_edge", params=(_BIT,), query="trigger_active_edge",
            source=f"{_S} [D]"),
        Cmd(":TRIGger:INPut:STANdby", set="trigger_standby", params=(Bool("on"),), query="trigger_standby",
            source=f"{_S} [D]"),
        Cmd(":TRIGger:INPut:SOFTtrigger", do="software_trigger", confirmed=False,
            source="[D] QMI ':TRIG:INP:SOFT'; long form [?]"),
        Cmd(":TRIGger:OUTPut", set="trigger_output_mode", params=(Num("mode", lo=0, hi=3, integer=True),),
            query="trigger_output_mode", source=f"{_S} ':TRIG:OUTP 0..3' [D]"),
        Cmd(":TRIGger:OUTPut:STEP", set="trigger_output_step_m",
            params=(Num("step", units=(METRE,), bare_unit="M", lo=0.0, hi=5e-7),), query="trigger_output_step_m",
            source=f"{_S} [D]"),
        Cmd(":TRIGger:OUTPut:SETTing", set="trigger_output_setting", params=(_BIT,), query="trigger_output_setting",
            source=f"{_S}; [D] QMI ':TRIG:OUTP:SETT'"),
        Cmd(":TRIGger:THRough", set="trigger_through", params=(Bool("on"),), query="trigger_through",
            confirmed=False, source=f"{_S} ':TRIG:THR 0|1'; long form [?]"),
        Cmd(":READout:POINts", query="log_points", source=f"{_S} ':READ:POIN?' [D]"),
        Cmd(":READout:DATa", query="log_wavelengths", source=f"{_S} ':READ:DAT?'; [D] QMI ':READout:DATa?'"),
        Cmd(":READout:DATa:POWer", query="log_powers", source=f"{_S} ':READ:DAT:POW?' [D]"),
        Cmd(":COHCtrl", set="coherence_control", params=(Bool("on"),), query="coherence_control", confirmed=False,
            source="[D] QMI ':COHC'; long form [?]"),
        Cmd(":SYSTem:ERRor[:NEXT]", query="system_error", source=f"{_S} [D]"),
        Cmd(":SYSTem:ALERt", query="system_alert", source=f"{_S} ':SYST:ALER?' [D]"),
        Cmd(":SYSTem:LOCK", query="interlock", source=f"{_S} ':SYST:LOCK?' [D]"),
        Cmd(":SYSTem:COMMunicate:CODe", set="command_set", params=(_BIT,), query="command_set",
            source=f"{_S} ':SYST:COMM:COD 0|1' [D]"),
        Cmd(":SYSTem:COMMunicate:GPIB:DELimiter", set="gpib_delimiter",
            params=(Num("delimiter", lo=0, hi=3, integer=True),), query="gpib_delimiter",
            source=f"{_S} ':SYST:COMM:GPIB:DEL 0..3' [D]"),
        Cmd(":SPECial:SHUTdown", do="shutdown", confirmed=False, source="[D] QMI ':SPEC:SHUT'; long form [?]"),
        Cmd(":SPECial:REBoot", do="reboot", source="[D] QMI ':SPECial:REBoot'"),
    ),
    source="instruments.md §1.5; Santec python-samples; PyMeasure tsl570; QMI tsl_570",
)
