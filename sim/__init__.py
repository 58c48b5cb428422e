"""Simulated bench: the vectorized chip emulator and the simulated instruments in front of it."""
