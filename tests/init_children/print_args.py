"""Print each argument on its own line."""

import sys

for arg in sys.argv[1:]:
    print(arg)
