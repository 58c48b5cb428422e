"""Calibration of microring weight banks, through the instruments only."""
