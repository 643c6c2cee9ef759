"""``python -m flows.cli``: the ``vitrine`` command."""

import sys

from flows.cli.app import main

sys.exit(main())
