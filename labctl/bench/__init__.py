"""The bench: bench files, the open bench and the session it hands upward, safety limits and safe state, the
instrument lock, and the emulation composition root (the only module that imports :mod:`labctl.sim`)."""
