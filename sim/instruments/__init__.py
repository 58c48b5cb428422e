"""Physics models of the simulated instruments, one module per instrument family.

:data:`MODELS` maps the bench-file driver name to the simulated instrument's protocol profile (by device
name), its model class, and whether it is reached over a serial URL.
"""
