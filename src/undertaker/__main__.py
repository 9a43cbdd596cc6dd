"""``python -m undertaker``."""

import sys

from undertaker.cli import main

sys.exit(main())
