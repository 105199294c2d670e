"""`python -m labctl`, the same as the `labctl` console script."""

import sys

from labctl.cli import main

sys.exit(main())
