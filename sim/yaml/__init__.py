"""pyvisa-sim definitions of the supported VISA instruments (package data)."""
