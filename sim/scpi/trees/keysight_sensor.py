"""The Keysight power-sensor tree (SENSe/READ/FETCh/INITiate/TRIGger of a sensor), shared by the 81634B in an
8164B (``[:CHANnel[m]]`` level present) and the N7744A/N7745A (no channel level).

Sources: [M] 8163A/B-8164A/B-8166A/B Programming Guide ("Slot and Channel Numbers": ``:SENSe[n]:[CHANnel[m]]:
POWer:WAVelength?``, example ``:sens1:chan2:pow:wav?``; logging function; ``:READ:POW:ALL?``,
``:SLOTn:IDN?``), N774xC Programming Guide (units table; ``:READ:POW:ALL:CONF?``), instruments.md §1.1, §2.1
[M][D]. [D] labctl's drivers, LabExT ``PowerMeterGenericKeysight.py`` / ``PowerMeterN7744A.py``
(``:SENS1:POW:ATIME <x> s``, ``:SENS1:POW:WAV <x> nm``, ``:SENS1:POW:RANG <dBm>`` bare, ``:SENS1:POW:GAIN:AUTO``,
``:FETCH1:POW?``, ``:INIT1:CONT ON``, ``:INIT1:IMM``, ``:sens1:func:par:logg <n>,<t>s``).
"""

from __future__ import annotations

from labctl.sim.scpi.params import Bool, Choice, Num
from labctl.sim.scpi.tree import Cmd
from labctl.sim.scpi.trees.keysight_units import DBM, METRE, SECOND

_LIMIT = (Choice("limit", options=("MINimum", "MAXimum", "DEFault"), optional=True),)


def sensor_commands(channel: str, *, wavelength_m: tuple[float, float], atime_s: tuple[float, float],
                    gain: bool, mainframe: bool) -> tuple[Cmd, ...]:
    """Sensor commands; ``channel`` is ``[:CHANnel[m]]`` (8164B) or empty (N774x). ``mainframe`` adds the 816x
    guide's reference and stability/MinMax commands (pp. 99-114), not seen for the N774x."""
    sens, c = ":SENSe[n]" + channel, channel
    lo, hi = wavelength_m
    commands = (
        Cmd(sens + ":POWer:WAVelength", set="sensor_wavelength_m",
            params=(Num("wavelength", units=(METRE,), bare_unit="M", lo=lo, hi=hi),),
            query="sensor_wavelength_m", query_params=_LIMIT,
            source="[M] 816x PG ':SENSe[n]:[CHANnel[m]]:POWer:WAVelength'; [D] labctl, LabExT"),
        Cmd(sens + ":POWer:UNIT", set="sensor_unit",
            params=(Choice("unit", options=("DBM", "Watt"), codes=((0, "DBM"), (1, "Watt"))),),
            query="sensor_unit", source="instruments.md §2.1 (0|1, DBM|WATT) [D labctl, LabExT]"),
        Cmd(sens + ":POWer:RANGe[:UPPer]", set="sensor_range_dbm",
            params=(Num("range", units=(DBM,), bare_unit="DBM", lo=-110.0, hi=30.0),),
            query="sensor_range_dbm", query_params=_LIMIT,
            source="[D] labctl ('…DBM'), LabExT (bare dBm); [:UPPer] per SCPI convention [?]"),
        Cmd(sens + ":POWer:RANGe:AUTO", set="sensor_auto_range", params=(Bool("on"),), query="sensor_auto_range",
            source="[D] labctl, LabExT"),
        Cmd(sens + ":POWer:ATIMe", set="sensor_averaging_time_s",
            params=(Num("time", units=(SECOND,), bare_unit="S", lo=atime_s[0], hi=atime_s[1]),),
            query="sensor_averaging_time_s", query_params=_LIMIT, source="[D] labctl, LabExT ':POW:ATIME <x> s'"),
        Cmd(sens + ":FUNCtion:PARameter:LOGGing", set="logging_parameters",
            params=(Num("points", lo=1, hi=1_000_000, integer=True),
                    Num("time", units=(SECOND,), bare_unit="S", lo=atime_s[0], hi=atime_s[1])),
            query="logging_parameters", source="[M] 816x PG logging function; [D] labctl, LabExT"),
        Cmd(sens + ":FUNCtion:STATe", set="function_state",
            params=(Choice("function", options=("NONE", "LOGGing", "STABility", "MINMax")),
                    Choice("action", options=("STOP", "STARt"))),
            query="function_state", source="[M] 816x PG; [D] labctl, LabExT 'logg,star'"),
        Cmd(sens + ":FUNCtion:RESult", query="function_result", source="[M] 816x PG; [D] labctl, LabExT"),
        Cmd(sens + ":CORRection:COLLect:ZERO", do="zero", source="instruments.md §2.3-like zeroing [?]",
            confirmed=False),
        Cmd(":READ[n]" + c + "[:SCALar]:POWer[:DC]", query="read_power",
            source="[M] 816x PG; [D] labctl ':READ<n>:POW?', LabExT"),
        Cmd(":FETCh[n]" + c + "[:SCALar]:POWer[:DC]", query="fetch_power",
            source="[M] 816x PG; [D] labctl, LabExT ':FETCH1:POW?'"),
        Cmd(":READ[n]:POWer:ALL", query="read_power_all",
            source="[M] 816x PG ':READ:POW:ALL?' (float32 LE block, W)"),
        Cmd(":READ[n]:POWer:ALL:CSV", query="read_power_all_csv", confirmed=False,
            source="ASCII form of ':READ:POW:ALL?', by analogy with ':FETC:POW:ALL:CSV?' [?]"),
        Cmd(":READ[n]:POWer:ALL:CONFig", query="read_power_all_config",
            source="[M] N774xC PG ':READ:POW:ALL:CONF?'"),
        Cmd(":FETCh[n]:POWer:ALL", query="fetch_power_all", source="[D] labctl ':FETC:POW:ALL?' [M] N774xC"),
        Cmd(":FETCh[n]:POWer:ALL:CSV", query="fetch_power_all_csv",
            source="[D] labctl ':FETC:POW:ALL:CSV?', public lab scripts 'fetch:power:all:csv?'"),
        Cmd(":INITiate[n]" + c + ":CONTinuous", set="continuous", params=(Bool("on"),), query="continuous",
            source="[D] labctl, LabExT ':INIT1:CONT ON'"),
        Cmd(":INITiate[n]" + c + "[:IMMediate]", do="initiate", source="[D] LabExT ':INIT1:IMM'"),
    )
    if mainframe:
        time = Num("time", units=(SECOND,), bare_unit="S", lo=0.0)
        commands += (
            Cmd(sens + ":POWer:REFerence:DISPlay", do="reference_from_display",
                source="[M] 816x PG p. 112 ':SENSe[n]:[CHANnel[m]]:POWer:REFerence:DISPlay'"),
            Cmd(sens + ":POWer:REFerence:STATe", set="relative", params=(Bool("relative"),), query="relative",
                source="[M] 816x PG p. 112 ':POWer:REFerence:STATe <boolean>'"),
            Cmd(sens + ":POWer:REFerence:STATe:RATio", set="reference_channel",
                params=(Num("slot", lo=0, hi=255, integer=True, keywords=False, specials=("TOREF",)),
                        Num("channel", lo=0, hi=2, integer=True, keywords=False)),
                query="reference_channel", source="[M] 816x PG p. 107/114 ':POWer:REFerence:STATe:RATio 2,1|TOREF,1'"),
            Cmd(sens + ":FUNCtion:PARameter:MINMax", set="minmax_parameters",
                params=(Choice("mode", options=("CONTinuous", "WINDow", "REFResh")),
                        Num("points", lo=1, hi=1_000_000, integer=True)),
                query="minmax_parameters", source="[M] 816x PG p. 99 ':FUNCtion:PARameter:MINMax?' -> WIND,+10"),
            Cmd(sens + ":FUNCtion:PARameter:STABility", set="stability_parameters", params=(time, time, time),
                query="stability_parameters",
                source="[M] 816x PG p. 99 ':FUNCtion:PARameter:STABility <total>,<period>,<averaging>[NS|US|MS|S]'"),
        )
    if gain:
        commands += (Cmd(sens + ":POWer:GAIN:AUTO", set="sensor_auto_gain", params=(Bool("on"),),
                         query="sensor_auto_gain", source="[D] LabExT PowerMeterN7744A; instruments.md §2.1"),)
    return commands
