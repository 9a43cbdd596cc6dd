"""The stable verdict names (docs/json.md): scripts match on them, so they never change."""

PARENT_EXITED = "parent-exited"
PARENT_OUTSIDE = "parent-outside-view"
PARENT_FROZEN = "parent-frozen"
PARENT_STOPPED = "parent-stopped"
PARENT_TRACED = "parent-traced"
PARENT_UNINTERRUPTIBLE = "parent-uninterruptible"
PARENT_ZOMBIE_LEADER = "parent-zombie-leader"
SIGCHLD_IGNORED_LATE = "sigchld-ignored-late"
SIGCHLD_BLOCKED = "sigchld-blocked"
NAMESPACE_INIT = "namespace-init-not-reaping"
SUBREAPER_NOT_REAPING = "subreaper-not-reaping"
HANDLER_LOSES_SIGNALS = "handler-loses-signals"
HANDLER_NOT_REAPING = "handler-not-reaping"
WAITS_FOR_OTHER = "waits-for-other-child"
NEVER_WAITS = "default-never-waits"
ZOMBIE_LEADER = "zombie-leader"

VERDICTS = (
    PARENT_EXITED,
    PARENT_OUTSIDE,
    PARENT_FROZEN,
    PARENT_STOPPED,
    PARENT_TRACED,
    PARENT_UNINTERRUPTIBLE,
    PARENT_ZOMBIE_LEADER,
    SIGCHLD_IGNORED_LATE,
    SIGCHLD_BLOCKED,
    NAMESPACE_INIT,
    SUBREAPER_NOT_REAPING,
    HANDLER_LOSES_SIGNALS,
    HANDLER_NOT_REAPING,
    WAITS_FOR_OTHER,
    NEVER_WAITS,
    ZOMBIE_LEADER,
)
