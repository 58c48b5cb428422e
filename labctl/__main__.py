"""``python -m labctl``: the ``labctl`` command."""

import sys

from labctl.cli.main import main

sys.exit(main())
