"""The command summaries the trees were written from, per instrument, to measure how much of each is implemented.

Each entry is one command of a manual's summary as printed (long form, optional nodes left out; ``?`` marks a
query-only command). The lists are what this work read, not the complete manuals: the Keithley 2400 entries are
its summary Tables 18-3 (FORMat), 18-4 (OUTPut), 18-6 (SENSe, pages 18-11 to 18-13), 18-7 (SOURce, page 18-16)
and the §18 detail pages seen; the Keysight, Santec and Thorlabs entries are the command tables of
instruments.md (§1.1, §1.2, §1.5, §2.1, §2.3, compiled from the manuals and public drivers) plus the manual
excerpts cited in the trees. Common commands (``*IDN?`` ...) are not counted.

``python -m labctl.sim.scpi.coverage`` prints, per instrument, the tree's size and the fraction of its summary
whose headers the tree resolves.
"""

from __future__ import annotations

SUMMARIES: dict[str, tuple[str, ...]] = {
    "keysight_n777xc": (
        # instruments.md §1.1 laser table and §1.2 (N777xC); N777xC PG ch. 4 excerpts
        ":SOURce0:WAVelength", ":SOURce0:POWer", ":SOURce0:POWer:UNIT", ":SOURce0:POWer:STATe",
        ":SOURce0:WAVelength:SWEep:MODE", ":SOURce0:WAVelength:SWEep:STARt", ":SOURce0:WAVelength:SWEep:STOP",
        ":SOURce0:WAVelength:SWEep:STEP", ":SOURce0:WAVelength:SWEep:SPEed", ":SOURce0:WAVelength:SWEep:CYCLes",
        ":SOURce0:WAVelength:SWEep:REPeat", ":SOURce0:WAVelength:SWEep:DWELl", ":SOURce0:WAVelength:SWEep",
        ":SOURce0:WAVelength:SWEep:CHECkparams?", ":SOURce0:WAVelength:SWEep:EXPectedtriggernum?",
        ":SOURce0:WAVelength:SWEep:PMAX?", ":SOURce0:WAVelength:SWEep:FLAG?",
        ":SOURce0:WAVelength:SWEep:SOFTtrigger", ":SOURce0:WAVelength:SWEep:LLOGging",
        ":SOURce0:READout:POINts?", ":SOURce0:READout:DATA?", ":TRIGger:CONFiguration", ":TRIGger0:INPut",
        ":TRIGger0:OUTPut", ":LOCK", ":SOURce0:WAVelength:CORRection:ARA", ":STATus0:OPERation?",
        ":SOURce0:AM:STATe", ":SYSTem:ERRor?",
    ),
    "keysight_8164b": (
        # instruments.md §1.1 (laser in slot 0, 81634B), §4; 816x PG excerpts
        ":SOURce0:WAVelength", ":SOURce0:POWer", ":SOURce0:POWer:UNIT", ":SOURce0:POWer:STATe",
        ":SOURce0:WAVelength:SWEep:MODE", ":SOURce0:WAVelength:SWEep:STARt", ":SOURce0:WAVelength:SWEep:STOP",
        ":SOURce0:WAVelength:SWEep:STEP", ":SOURce0:WAVelength:SWEep:SPEed", ":SOURce0:WAVelength:SWEep:CYCLes",
        ":SOURce0:WAVelength:SWEep:REPeat", ":SOURce0:WAVelength:SWEep:DWELl", ":SOURce0:WAVelength:SWEep",
        ":SOURce0:WAVelength:SWEep:CHECkparams?", ":SOURce0:WAVelength:SWEep:EXPectedtriggernum?",
        ":SOURce0:WAVelength:SWEep:PMAX?", ":SOURce0:WAVelength:SWEep:FLAG?",
        ":SOURce0:WAVelength:SWEep:SOFTtrigger", ":SOURce0:WAVelength:SWEep:LLOGging",
        ":SOURce0:READout:POINts?", ":SOURce0:READout:DATA?", ":TRIGger:CONFiguration", ":TRIGger0:INPut",
        ":TRIGger0:OUTPut", ":LOCK", ":SLOT1:IDN?", ":SLOT1:EMPTy?", ":SENSe1:CHANnel1:POWer:WAVelength",
        ":SENSe1:CHANnel1:POWer:UNIT", ":SENSe1:CHANnel1:POWer:RANGe", ":SENSe1:CHANnel1:POWer:RANGe:AUTO",
        ":SENSe1:CHANnel1:POWer:ATIMe", ":READ1:CHANnel1:POWer?", ":FETCh1:CHANnel1:POWer?",
        ":INITiate1:CHANnel1:CONTinuous", ":INITiate1:CHANnel1:IMMediate", ":READ1:POWer:ALL?",
        ":READ1:POWer:ALL:CONFig?", ":SENSe1:CHANnel1:FUNCtion:PARameter:LOGGing",
        ":SENSe1:CHANnel1:FUNCtion:STATe", ":SENSe1:CHANnel1:FUNCtion:RESult?", ":TRIGger1:CHANnel1:INPut",
        ":STATus1:OPERation?", ":STATus1:OPERation:CONDition?", ":STATus1:OPERation:ENABle",
        ":STATus1:QUEStionable:CONDition?", ":STATus1:QUEStionable:ENABle", ":SYSTem:ERRor?",
        ":SENSe1:CHANnel1:FUNCtion:PARameter:STABility", ":SENSe1:CHANnel1:FUNCtion:PARameter:MINMax",
        # 816x PG pp. 107-114 excerpts
        ":SENSe1:CHANnel1:POWer:REFerence:DISPlay", ":SENSe1:CHANnel1:POWer:REFerence:STATe",
        ":SENSe1:CHANnel1:POWer:REFerence:STATe:RATio",
    ),
    "keysight_n774xa": (
        # instruments.md §2.1, §4; N774xC PG excerpts
        ":SENSe1:POWer:WAVelength", ":SENSe1:POWer:UNIT", ":SENSe1:POWer:RANGe", ":SENSe1:POWer:RANGe:AUTO",
        ":SENSe1:POWer:ATIMe", ":SENSe1:POWer:GAIN:AUTO", ":READ1:POWer?", ":FETCh1:POWer?", ":FETCh:POWer:ALL?",
        ":READ:POWer:ALL?", ":READ:POWer:ALL:CONFig?", ":SENSe1:FUNCtion:PARameter:LOGGing",
        ":SENSe1:FUNCtion:STATe", ":SENSe1:FUNCtion:RESult?", ":TRIGger1:INPut", ":TRIGger1:OUTPut",
        ":TRIGger", ":INITiate1:CONTinuous", ":INITiate1:IMMediate", ":SYSTem:ERRor?",
    ),
    "santec_tsl570": (
        # instruments.md §1.5 table
        ":WAVelength", ":FREQuency", ":WAVelength:UNIT", ":WAVelength:FINetuning", ":WAVelength:FINetuning:DISable",
        ":POWer", ":POWer:ACTual?", ":POWer:ATTenuation", ":POWer:ATTenuation:AUTo", ":POWer:UNIT",
        ":POWer:STATe", ":POWer:SHUTter", ":WAVelength:SWEep:STARt", ":WAVelength:SWEep:STOP",
        ":WAVelength:SWEep:STEP", ":WAVelength:SWEep:RANGe:MINimum?", ":WAVelength:SWEep:RANGe:MAXimum?",
        ":WAVelength:SWEep:MODe", ":WAVelength:SWEep:SPEed", ":WAVelength:SWEep:DWELl", ":WAVelength:SWEep:DELay",
        ":WAVelength:SWEep:CYCLes", ":WAVelength:SWEep:COUNt?", ":WAVelength:SWEep", ":WAVelength:SWEep:REPeat",
        ":WAVelength:SWEep:SOFTtrigger", ":TRIGger:INPut:EXTernal", ":TRIGger:INPut:ACTive",
        ":TRIGger:INPut:STANdby", ":TRIGger:OUTPut", ":TRIGger:OUTPut:STEP", ":TRIGger:OUTPut:SETTing",
        ":TRIGger:THRough", ":READout:POINts?", ":READout:DATa?", ":READout:DATa:POWer?", ":SYSTem:ERRor?",
        ":SYSTem:ALERt?", ":SYSTem:LOCK?", ":SYSTem:COMMunicate:CODe", ":SYSTem:COMMunicate:GPIB:DELimiter",
        # named there, not implemented
        ":FREQuency:SWEep:STARt", ":FREQuency:SWEep:STOP", ":FREQuency:SWEep:STEP",
    ),
    "keysight_daq970a": (
        # 34970A/34972A User's Guide ch. 4-5 (DC volts, integration time, scanning, triggering); DAQ970A PG p.215
        ":CONFigure:VOLTage:DC", ":MEASure:VOLTage:DC?", ":SENSe:VOLTage:DC:NPLCycles", ":SENSe:VOLTage:DC:APERture",
        ":SENSe:VOLTage:DC:RANGe", ":ROUTe:SCAN", ":ROUTe:SCAN:SIZE?", ":TRIGger:SOURce", ":TRIGger:COUNt",
        ":INITiate", ":FETCh?", ":READ?", ":ABORt", ":SYSTem:ERRor?", ":SYSTem:CTYPe?",
        # named there, not implemented (not used for photodiode scans)
        ":SENSe:VOLTage:DC:RESolution", ":CALCulate:SCALe:GAIN", ":CALCulate:SCALe:OFFSet", ":TRIGger:TIMer",
    ),
    "thorlabs_pm100": (
        # instruments.md §2.3 table
        ":SENSe:CORRection:WAVelength", ":MEASure:POWer?", ":CONFigure:POWer", ":INITiate", ":FETCh?", ":READ?",
        ":SENSe:AVERage:COUNt", ":SENSe:POWer:RANGe:AUTO", ":SENSe:POWer:RANGe:UPPer", ":SENSe:POWer:UNIT",
        ":SYSTem:SENSor:IDN?", ":SENSe:CORRection:COLLect:ZERO", ":SENSe:CORRection:COLLect:ZERO:MAGNitude?",
        ":SENSe:CORRection:BEAMdiameter", ":SENSe:CORRection:LOSS:INPut:MAGNitude", ":SYSTem:ERRor?",
    ),
    "keithley_2400": (
        # Table 18-3 FORMat
        ":FORMat:SREGister", ":FORMat:DATA", ":FORMat:BORDer", ":FORMat:ELEMents", ":FORMat:ELEMents:CALCulate",
        ":FORMat:SOURce2",
        # Table 18-4 OUTPut
        ":OUTPut:STATe", ":OUTPut:ENABle", ":OUTPut:ENABle:TRIPped?", ":OUTPut:SMODe",
        # Table 18-6 SENSe (pages 18-11 to 18-13)
        ":SENSe:CURRent:RANGe", ":SENSe:CURRent:RANGe:AUTO", ":SENSe:CURRent:RANGe:AUTO:ULIMit?",
        ":SENSe:CURRent:RANGe:AUTO:LLIMit", ":SENSe:CURRent:NPLCycles", ":SENSe:CURRent:PROTection",
        ":SENSe:CURRent:PROTection:TRIPped?", ":SENSe:CURRent:PROTection:RSYNchronize",
        ":SENSe:VOLTage:RANGe", ":SENSe:VOLTage:RANGe:AUTO", ":SENSe:VOLTage:RANGe:AUTO:ULIMit?",
        ":SENSe:VOLTage:RANGe:AUTO:LLIMit", ":SENSe:VOLTage:NPLCycles", ":SENSe:VOLTage:PROTection",
        ":SENSe:VOLTage:PROTection:TRIPped?", ":SENSe:VOLTage:PROTection:RSYNchronize",
        ":SENSe:RESistance:MODE", ":SENSe:RESistance:OCOMpensated", ":SENSe:RESistance:RANGe",
        ":SENSe:RESistance:RANGe:AUTO", ":SENSe:RESistance:RANGe:AUTO:ULIMit",
        ":SENSe:RESistance:RANGe:AUTO:LLIMit", ":SENSe:CURRent:RANGe:HOLDoff", ":SENSe:CURRent:RANGe:HOLDoff:DELay",
        ":SENSe:RESistance:NPLCycles",
        # Table 18-7 SOURce (page 18-16) and §18 detail pages seen
        ":SOURce:CURRent:TRIGgered", ":SOURce:CURRent:TRIGgered:SFACtor", ":SOURce:CURRent:TRIGgered:SFACtor:STATe",
        ":SOURce:CURRent:STARt", ":SOURce:CURRent:STOP", ":SOURce:CURRent:STEP", ":SOURce:CURRent:SPAN",
        ":SOURce:CURRent:CENTer", ":SOURce:VOLTage:MODE", ":SOURce:VOLTage:RANGe", ":SOURce:VOLTage:RANGe:AUTO",
        ":SOURce:VOLTage", ":SOURce:CURRent", ":SOURce:VOLTage:TRIGgered", ":SOURce:VOLTage:PROTection",
        ":SOURce:VOLTage:STARt", ":SOURce:VOLTage:STOP", ":SOURce:CLEar:AUTO", ":SOURce:CLEar:AUTO:MODE",
        ":SOURce:FUNCtion", ":SOURce:CURRent:MODE", ":SOURce:DELay", ":SOURce:DELay:AUTO",
        ":SOURce:LIST:CURRent", ":SOURce:LIST:CURRent:APPend", ":SOURce:LIST:CURRent:POINts?",
        ":SOURce:LIST:CURRent:STARt", ":SOURce:SWEep:SPACing", ":SOURce:SWEep:POINts",
        # §14 and instruments.md §3.2
        ":ARM:TIMer", ":STATus:QUEue:ENABle", ":READ?", ":MEASure:CURRent?", ":MEASure:VOLTage?",
        ":SENSe:FUNCtion", ":TRIGger:COUNt", ":SOURce:LIST:VOLTage", ":SOURce:LIST:VOLTage:APPend",
        ":TRACe:CLEar", ":TRACe:POINts", ":TRACe:FEED:CONTrol", ":INITiate", ":TRACe:DATA?", ":SYSTem:ERRor?",
    ),
}
