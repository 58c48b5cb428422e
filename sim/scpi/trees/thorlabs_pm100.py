"""Thorlabs PM100D / PM100USB power meter console (PM100A/PM400 share the SCPI core).

Sources: instruments.md §2.3 [M: PM100D/PM100USB manuals; D: PyMeasure ``thorlabspm100usb.py``
(``SENSE:CORR:WAV``, ``SYST:SENSOR:IDN?``, ``MEAS:ENER?``), QMI 0.54 ``thorlabs/pm100d.py`` (``SENS:POW:RANG?``,
``SENS:POW:RANG:AUTO``, ``MEAS:CURR?``), qcodes-contrib ``PM100D.py``, labctl's driver]. The console's SCPI
tree makes SENSe[1], the ``[:DC]`` function level and ``[:SCALar]`` optional (SCPI-99 convention, as the
drivers' short spellings need). The correction wavelength is in nm: a bare number is nm; ``NM`` (and other
metre suffixes) is accepted [?]. Commands of the manual's summary not listed in instruments.md are marked
``confirmed=False`` (recalled from the PM100D manual's SCPI appendix, not checked this time).
"""

from __future__ import annotations

from labctl.sim.scpi import common
from labctl.sim.scpi.params import Bool, Choice, Num
from labctl.sim.scpi.tree import Cmd, Tree
from labctl.sim.scpi.units import Unit

_S = "instruments.md §2.3"
_LIMIT = (Choice("limit", options=("MINimum", "MAXimum", "DEFault"), optional=True),)
_SENS = "[:SENSe[1]]"
_WATT = Unit("W")

TREE = Tree(
    "Thorlabs PM100",
    (common.IDN, common.RST, common.CLS, common.OPC, common.ESE, common.ESR, common.SRE, common.STB, common.TST,
     common.WAI)
    + (
        Cmd(_SENS + ":CORRection:WAVelength", set="wavelength_m",
            params=(Num("wavelength", units=(Unit("M"),), bare=1e-9, bare_unit="M", lo=150e-9, hi=25e-6),),
            query="wavelength_m", query_params=_LIMIT, source=f"{_S} 'SENS:CORR:WAV <nm>', '? MIN|MAX' [M][D]"),
        Cmd(_SENS + ":AVERage[:COUNt]", set="average_count", params=(Num("count", lo=1, hi=1_000_000, integer=True),),
            query="average_count", query_params=_LIMIT, source=f"{_S} 'SENS:AVER:COUN' [D]"),
        Cmd(_SENS + ":POWer[:DC]:RANGe:AUTO", set="auto_range", params=(Bool("on"),), query="auto_range",
            source=f"{_S} 'SENS:POW:RANG:AUTO' [D]"),
        Cmd(_SENS + ":POWer[:DC]:RANGe[:UPPer]", set="range_upper_w",
            params=(Num("power", units=(_WATT,), bare_unit="W", lo=0.0, hi=250.0),), query="range_upper_w",
            query_params=_LIMIT, source=f"{_S} 'SENS:POW:RANG:UPP' [D labctl]; 'SENS:POW:RANG?' [D QMI]"),
        Cmd(_SENS + ":POWer[:DC]:UNIT", set="power_unit", params=(Choice("unit", options=("W", "DBM")),),
            query="power_unit", source=f"{_S} 'SENS:POW:UNIT W|DBM' [D]"),
        Cmd(_SENS + ":POWer[:DC]:REFerence", set="power_reference", params=(Num("reference", units=(_WATT,)),),
            query="power_reference", confirmed=False, source="PM100D manual SCPI appendix [?]"),
        Cmd(_SENS + ":POWer[:DC]:REFerence:STATe", set="power_reference_on", params=(Bool("on"),),
            query="power_reference_on", confirmed=False, source="PM100D manual SCPI appendix [?]"),
        Cmd(_SENS + ":CORRection:BEAMdiameter", set="beam_diameter_mm", params=(Num("diameter", lo=0.0),),
            query="beam_diameter_mm", confirmed=False, source=f"{_S} 'SENS:CORR:BEAM <mm>'; long form [?]"),
        Cmd(_SENS + ":CORRection[:LOSS][:INPut][:MAGNitude]", set="input_loss_db", params=(Num("loss"),),
            query="input_loss_db", source=f"{_S} 'SENS:CORR:LOSS:INP:MAGN <dB>' [M]"),
        Cmd(_SENS + ":CORRection:COLLect:ZERO[:INITiate]", do="zero", source=f"{_S} 'SENS:CORR:COLL:ZERO[:INIT]'"),
        Cmd(_SENS + ":CORRection:COLLect:ZERO:MAGNitude", query="zero_magnitude",
            source=f"{_S} '…:ZERO:MAGN?'"),
        Cmd(_SENS + ":CORRection:COLLect:ZERO:STATe", query="zero_state", confirmed=False,
            source="PM100D manual SCPI appendix [?]"),
        Cmd(":MEASure[:SCALar]:POWer", query="measure_power", source=f"{_S} 'MEAS:POW?' [D]"),
        Cmd(":MEASure[:SCALar]:CURRent[:DC]", query="measure_current", source="[D] QMI 'MEAS:CURR?'"),
        Cmd(":MEASure[:SCALar]:ENERgy", query="measure_energy", source="[D] PyMeasure 'MEAS:ENER?'"),
        Cmd(":MEASure[:SCALar]:TEMPerature", query="measure_temperature", confirmed=False,
            source="PM100D manual SCPI appendix [?]"),
        Cmd(":CONFigure[:SCALar]:POWer", do="configure_power", query="configuration",
            source=f"{_S} 'CONF:POW' then INIT, FETC? [M]"),
        Cmd(":INITiate[:IMMediate]", do="initiate", source=f"{_S} 'INIT' [M]"),
        Cmd(":ABORt", do="abort", confirmed=False, source="PM100D manual SCPI appendix [?]"),
        Cmd(":FETCh", query="fetch", source=f"{_S} 'FETC?' [M]"),
        Cmd(":READ", query="read", source=f"{_S} 'READ?' [M]"),
        Cmd(":SYSTem:SENSor:IDN", query="sensor_identity", source=f"{_S} 'SYST:SENS:IDN?' [M][D]"),
        Cmd(":SYSTem:ERRor[:NEXT]", query="system_error", source=f"{_S} 'SYST:ERR?' [D]"),
        Cmd(":SYSTem:VERSion", query="scpi_version", confirmed=False, source="SCPI-99 mandatory [?]"),
    ),
    source="Thorlabs PM100D/PM100USB manuals (SCPI appendix); instruments.md §2.3",
)
