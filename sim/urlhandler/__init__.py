"""pyserial URL handlers of the simulated bench (``labctlsim://<bench>/<instrument>``)."""
