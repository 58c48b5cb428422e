"""The lab's named experiments: sweeps, calibration, verification, training."""
