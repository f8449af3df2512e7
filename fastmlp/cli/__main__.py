"""``python -m fastmlp.cli`` is the ``fastmlp`` command."""

import sys

from fastmlp.cli import main

sys.exit(main())
