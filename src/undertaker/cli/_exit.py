"""Exit statuses shared by every subcommand (no imports: on the path of ``run``)."""

EXIT_OK = 0  # nothing found
EXIT_FOUND = 1  # zombies found (ps, tree)
EXIT_ERROR = 2  # bad input, unreadable /proc, refused by the kernel, stdout unwritable
EXIT_INCOMPLETE = 3  # no zombies seen, but some of /proc was hidden from us (ps, tree)

# undertaker reap: each refusal has its own status, so scripts can tell them apart.
EXIT_NOT_PERMITTED = 4  # ptrace or a signal not allowed (Yama ptrace_scope, CAP_SYS_PTRACE)
EXIT_NOT_ZOMBIE = 5  # a target is not a zombie (any more), or its PID was reused
EXIT_PARENT_GONE = 6  # the parent exited or was replaced before we acted
EXIT_ZOMBIE_LEADER = 7  # a live zombie leader: not reapable
EXIT_PARENT_REFUSED = 8  # the parent may not be touched (traced, protected, PID 1, D)
EXIT_REMAINING = 9  # the methods allowed ran, and zombies remain

EXIT_MISSING_EXTRA = 10  # an optional dependency is not installed (exporter: prometheus_client)
