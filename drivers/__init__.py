"""Instrument drivers: transports, capability interfaces and one driver per instrument family."""
