"""Exit statuses shared by every subcommand (no imports: on the path of ``run``)."""

EXIT_OK = 0  # nothing found
EXIT_FOUND = 1  # zombies found (ps, tree)
EXIT_ERROR = 2  # bad input, unreadable /proc, refused by the kernel, stdout unwritable
EXIT_INCOMPLETE = 3  # no zombies seen, but some of /proc was hidden from us (ps, tree)
