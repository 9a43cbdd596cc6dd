"""The fixes for each verdict, least disruptive first, each with the exact command or code.

Code changes come first (they end the leak for good), then the operational
remedies, ordered by what they disturb: a signal the parent already
handles, a pause of a few milliseconds under ptrace, then ending the
parent. A remedy that cannot work on the evidence is left out (a nudge to a
parent that ignores or blocks SIGCHLD, ptrace on a parent that already has
a tracer or sleeps in ``D``). Pure: no reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from undertaker.diagnose._container import service_of
from undertaker.diagnose._names import (
    HANDLER_LOSES_SIGNALS,
    HANDLER_NOT_REAPING,
    NAMESPACE_INIT,
    NEVER_WAITS,
    PARENT_FROZEN,
    PARENT_OUTSIDE,
    PARENT_STOPPED,
    PARENT_TRACED,
    PARENT_UNINTERRUPTIBLE,
    PARENT_ZOMBIE_LEADER,
    SIGCHLD_BLOCKED,
    SIGCHLD_IGNORED_LATE,
    SUBREAPER_NOT_REAPING,
    WAITS_FOR_OTHER,
)
from undertaker.diagnose._signals import has_sigchld

if TYPE_CHECKING:
    from undertaker.diagnose._evidence import Evidence

CODE = "code"
OPERATIONAL = "operational"


class Fix(NamedTuple):
    """One remedy: ``code`` (change the program) or ``operational`` (act on it now)."""

    kind: str
    summary: str
    how: str  # the exact command, or the code to add


def _python(ev: Evidence) -> bool:
    return ev.runtime == "python"


def _c_wait_code() -> list[Fix]:
    return [
        Fix(CODE, "wait for every child you fork", "waitpid(pid, &status, 0);  /* per child */"),
        Fix(
            CODE,
            "when exit statuses are not needed, let the kernel reap: before forking",
            "signal(SIGCHLD, SIG_IGN);",
        ),
        Fix(
            CODE,
            "or double fork, so init adopts the grandchild",
            "if (fork() == 0) { if (fork() == 0) execvp(...); _exit(0); } waitpid(pid, 0, 0);",
        ),
    ]


def _wait_code(ev: Evidence) -> list[Fix]:
    """Reap each child the program starts: tailored to Python's own child APIs."""
    if not _python(ev):
        # A double fork hands the grandchild to PID 1: no help when PID 1 is the parent.
        return _c_wait_code()[: 2 if ev.is_namespace_init else 3]
    popen = Fix(
        CODE,
        "Python: wait for every subprocess you start",
        "with subprocess.Popen(argv) as proc: ...  # or proc.wait() / proc.communicate()",
    )
    if ev.forked_without_exec:
        # A shared name only suggests a fork without exec: a Popen of the same
        # interpreter looks alike, so both fixes are offered.
        return [
            Fix(
                CODE,
                "Python: these children share its name, so were probably forked without exec "
                "(multiprocessing or os.fork): join or wait for each",
                "p.join()  # each multiprocessing.Process (or os.waitpid(pid, 0) per os.fork); "
                "multiprocessing.active_children() now and then joins the finished",
            ),
            popen._replace(
                summary="or, if they are subprocesses running the same program, wait for each"
            ),
        ]
    return [popen]


def _handler_loop(ev: Evidence) -> Fix:
    if _python(ev) and ev.forked_without_exec:
        how = (
            "def on_sigchld(signum, frame):\n"
            "    while True:  # one signal may stand for many exits\n"
            "        try:\n"
            "            pid, status = os.waitpid(-1, os.WNOHANG)\n"
            "        except ChildProcessError:\n"
            "            return\n"
            "        if pid == 0:\n"
            "            return"
        )
        return Fix(
            CODE,
            "Python: reap in a loop with WNOHANG in the handler (only if no subprocess or "
            "multiprocessing object waits for its own child: it would then read 0)",
            how,
        )
    if _python(ev):
        how = (
            "def on_sigchld(signum, frame):\n"
            "    for proc in list(running):  # your own Popen objects\n"
            "        if proc.poll() is not None: running.remove(proc)"
        )
        return Fix(CODE, "Python: poll each child you own in the handler (not waitpid(-1))", how)
    how = (
        "void on_sigchld(int sig) { int saved = errno;\n"
        "    while (waitpid(-1, NULL, WNOHANG) > 0) ;  /* one signal may stand for many */\n"
        "    errno = saved; }"
    )
    return Fix(CODE, "reap in a loop with WNOHANG in the SIGCHLD handler", how)


def _ignore_early(ev: Evidence) -> Fix:
    summary = "set SIG_IGN before the first fork, or drain once right after setting it"
    if not _python(ev):
        how = "signal(SIGCHLD, SIG_IGN); while (waitpid(-1, NULL, WNOHANG) > 0) ;"
        return Fix(CODE, summary, how)
    how = (
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        "while True:  # the children that were zombies already\n"
        "    try:\n"
        "        if os.waitpid(-1, os.WNOHANG)[0] == 0:\n"
        "            break\n"
        "    except ChildProcessError:\n"
        "        break"
    )
    return Fix(CODE, f"Python: {summary}", how)


def _unblock(ev: Evidence) -> Fix:
    summary = (
        "unblock SIGCHLD, or when it is blocked for sigwaitinfo/signalfd, "
        "call waitpid in a loop each time it is collected"
    )
    if not _python(ev):
        how = (
            "sigprocmask(SIG_UNBLOCK, &chld, NULL);  /* or: signalfd read, then "
            "while (waitpid(-1, NULL, WNOHANG) > 0) ; */"
        )
        return Fix(CODE, summary, how)
    how = (
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})\n"
        "# or, after each signal.sigwaitinfo({signal.SIGCHLD}): os.waitpid(-1, os.WNOHANG)"
        " until it returns (0, 0)"
    )
    return Fix(CODE, f"Python: {summary}", how)


def _thaw(ev: Evidence) -> list[Fix]:
    """Thaw what froze it: the container runtime's unpause, else the cgroup file itself."""
    fixes = []
    container = ev.container
    if container is not None and container.runtime in ("docker", "podman") and container.id:
        fixes.append(
            Fix(
                OPERATIONAL,
                "unpause the container; it may then reap",
                f"{container.runtime} unpause {container.id[:12]}",
            )
        )
    control = ev.frozen or ""
    value = "THAWED" if control.endswith("freezer.state") else "0"
    fixes.append(Fix(OPERATIONAL, "thaw its cgroup; it may then reap", f"echo {value} > {control}"))
    return fixes


def _reap(method: str, pid: int, summary: str) -> Fix:
    return Fix(OPERATIONAL, summary, f"undertaker reap --method {method} --parent {pid}")


def _nudge(pid: int) -> Fix:
    return _reap(
        "nudge",
        pid,
        "try sending SIGCHLD again: a handler that reaps one child per signal reaps one "
        "more (reap reports whether zombies went; if not, the code fix is the way)",
    )


def _ptrace(ev: Evidence) -> Fix:
    # An injected call passes the process's seccomp filter like any other.
    filtered = ev.status is not None and ev.status.seccomp
    return _reap(
        "ptrace",
        ev.pid,
        "make the parent call wait4 for them, pausing it a few ms "
        "(its own later wait for them gets ECHILD)"
        + ("; it runs under seccomp, whose filter may refuse that wait4" if filtered else ""),
    )


def _kill_parent(pid: int) -> Fix:
    return _reap("kill-parent", pid, "end the parent (SIGTERM, then SIGKILL): init reaps them")


_ORPHANS = "if these are adopted orphans (their own parent exited)"


def _container_fixes(ev: Evidence) -> list[Fix]:
    """Wait for its own children first; an init or a Reaper only reaps adopted orphans.

    The kernel does not record a zombie's original parent, so the orphan
    fixes are offered on that condition: they leave the program's own
    children (the Reaper by design, ``undertaker run`` by moving it to PID 2).
    """
    fixes = [
        Fix(
            CODE,
            f"{_ORPHANS}: run the entry point under an init that reaps them",
            'ENTRYPOINT ["undertaker", "run", "--"]',
        ),
        Fix(CODE, f"{_ORPHANS}: or let Docker add one", "docker run --init IMAGE"),
        Fix(
            CODE,
            f"{_ORPHANS}: or, in Kubernetes, let the pause container be PID 1",
            "spec:\n  shareProcessNamespace: true",
        ),
    ]
    if _python(ev):
        fixes.insert(
            0,
            Fix(
                CODE,
                f"{_ORPHANS}: Python as PID 1 reaps them with a Reaper "
                "(it never reaps the program's own children)",
                "import undertaker\nwith undertaker.Reaper(): main()",
            ),
        )
    return _wait_code(ev) + fixes


def _subreaper_fixes(ev: Evidence) -> list[Fix]:
    """Reap the orphans it adopts, or adopt none; then its own zombies, if some are."""
    if _python(ev):
        fixes = [
            Fix(
                CODE,
                "Python: a subreaper must reap the orphans it adopts: a Reaper does "
                "(it never reaps the program's own children)",
                "import undertaker\nwith undertaker.Reaper(): main()",
            ),
            Fix(
                CODE,
                "or, if it need not adopt orphans, stop being a subreaper: they go to init",
                "undertaker.become_subreaper(enable=False)",
            ),
        ]
    else:
        fixes = [
            Fix(
                CODE,
                "a subreaper must reap the orphans it adopts: on each SIGCHLD, in a loop",
                "while (waitpid(-1, NULL, WNOHANG) > 0) ;",
            ),
            Fix(
                CODE,
                "or, if it need not adopt orphans, stop being a subreaper: they go to init",
                "prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);",
            ),
        ]
    return fixes + (_wait_code(ev) if ev.adopted < len(ev.zombies) else [])


def _restart_container(ev: Evidence) -> list[Fix]:
    """Restart what owns the namespace: its PID 1 cannot be replaced while it runs.

    cri-tools has no ``restart``: under Kubernetes the pod is deleted (its
    controller makes a new one) or the container stopped (kubelet starts it
    again, as its restartPolicy says).
    """
    container = ev.container
    if container is None:
        return [
            Fix(
                OPERATIONAL,
                "end the namespace's PID 1 (every process of the namespace ends with it), "
                "then start the service again; a PID 1 ignores SIGTERM it has no handler for",
                f"kill -KILL {ev.pid}",
            )
        ]
    short = container.id[:12] if container.id else None
    if container.runtime in ("docker", "podman") and short:
        return [Fix(OPERATIONAL, "restart the container", f"{container.runtime} restart {short}")]
    fixes = []
    if container.pod_uid:
        fixes.append(
            Fix(
                OPERATIONAL,
                "delete the pod; its controller (Deployment, StatefulSet...) creates a new one",
                "kubectl get pods -A -o custom-columns=NAMESPACE:.metadata.namespace,"
                f"NAME:.metadata.name,UID:.metadata.uid | grep {container.pod_uid}\n"
                "kubectl delete pod -n NAMESPACE NAME",
            )
        )
    if short:
        fixes.append(
            Fix(
                OPERATIONAL,
                "or stop the container; kubelet starts it again (restartPolicy)",
                f"crictl stop {short}",
            )
        )
    return fixes or [
        Fix(
            OPERATIONAL,
            f"restart the {container.runtime} container (no id in its cgroup: find it by PID)",
            f"cat /proc/{ev.pid}/cgroup",
        )
    ]


def _remedies(verdict: str, ev: Evidence) -> list[Fix]:
    """The operational remedies that can work on this evidence, least disruptive first."""
    pid = ev.pid
    status = ev.status
    traced = status is not None and status.tracer_pid != 0
    if verdict == NAMESPACE_INIT:
        nudge = [_nudge(pid)] if status is not None and has_sigchld(status.sig_cgt) else []
        return [*nudge, _ptrace(ev), *_restart_container(ev)]
    fixes = []
    if verdict == HANDLER_LOSES_SIGNALS:
        fixes.append(_nudge(pid))
    if verdict not in (PARENT_UNINTERRUPTIBLE, PARENT_FROZEN) and not traced:
        fixes.append(_ptrace(ev))
    fixes.append(_kill_parent(pid))
    unit = service_of(ev.cgroups) if ev.cgroups else None
    if unit is not None:
        fixes.append(
            Fix(
                OPERATIONAL,
                "or restart its systemd service: the whole service ends (init reaps its "
                "zombies) and starts again",
                f"systemctl restart {unit}",
            )
        )
    return fixes


def fixes_for(verdict: str, ev: Evidence) -> list[Fix]:
    """The ranked fixes for *verdict* on evidence *ev*: code changes, then remedies."""
    if ev.gone:
        return [Fix(OPERATIONAL, "look again: the zombies have a new parent", "undertaker why")]
    if verdict == PARENT_OUTSIDE and ev.unreadable:
        return [Fix(OPERATIONAL, "diagnose as root, who sees every process", "sudo undertaker why")]
    if verdict == PARENT_OUTSIDE:
        # We are inside a namespace the parent encloses: only from there up is it visible.
        return [
            Fix(
                OPERATIONAL,
                "run the diagnosis on the host (or in the enclosing PID namespace that "
                "holds the parent): from inside this one it cannot be seen",
                "undertaker why",
            )
        ]
    first: list[Fix] = []
    if verdict == PARENT_FROZEN:
        first = _thaw(ev)
    elif verdict == PARENT_STOPPED:
        first = [Fix(OPERATIONAL, "let it run again; it may then reap", f"kill -CONT {ev.pid}")]
    elif verdict == PARENT_TRACED and ev.status is not None:
        tracer = ev.status.tracer_pid
        first = [
            Fix(
                OPERATIONAL,
                f"detach the tracer ({ev.tracer_comm or '?'}): quit the debugger, or end it",
                f"kill {tracer}",
            )
        ]
    elif verdict == PARENT_UNINTERRUPTIBLE:
        first = [
            Fix(OPERATIONAL, "see what the kernel call waits for", f"cat /proc/{ev.pid}/stack")
        ]
    elif verdict == SIGCHLD_IGNORED_LATE:
        first = [_ignore_early(ev)]
    elif verdict == SIGCHLD_BLOCKED:
        first = [_unblock(ev)]
    elif verdict == HANDLER_LOSES_SIGNALS:
        # Either cause fits the evidence: the loop in the handler, or a wait per child.
        first = [_handler_loop(ev), *_wait_code(ev)[:1]]
    elif verdict == HANDLER_NOT_REAPING:
        first = [_handler_loop(ev)]
    elif verdict == PARENT_ZOMBIE_LEADER:
        first = [
            Fix(
                CODE,
                "a live thread must reap: the main thread that exited no longer can",
                "while (waitpid(-1, NULL, WNOHANG) > 0) ;  /* in a thread that runs */",
            )
        ]
    elif verdict == NAMESPACE_INIT:
        first = _container_fixes(ev)
    elif verdict == SUBREAPER_NOT_REAPING:
        first = _subreaper_fixes(ev)
    elif verdict in (WAITS_FOR_OTHER, NEVER_WAITS):
        first = _wait_code(ev)
    return first + _remedies(verdict, ev)
