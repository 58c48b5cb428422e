"""labctl: control stack for silicon-photonic neural-network test benches."""

__version__ = "0.1.0"
