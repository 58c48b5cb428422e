"""Suite-wide set-up."""

from __future__ import annotations

import signal

# A process started in the background by a non-interactive shell (`cmd &`, nohup, some CI runners) inherits SIGINT
# ignored, and Python then leaves it ignored: the Ctrl-C tests need Python's own handler, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
