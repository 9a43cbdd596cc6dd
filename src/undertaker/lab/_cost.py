"""What a zombie costs: its memory, its kernel entry, its PID (articles 001, 003)."""

from __future__ import annotations

import os
import time
from typing import Any

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    decide,
    experiment,
)
from undertaker.testing import ZombieParent, ZombieSpec

HOG_MIB = 128  # what the child touches before it dies
ZOMBIES = 200  # zombies whose kernel memory is measured together


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in kB."""
    found = {}
    with open("/proc/meminfo") as info:
        for line in info:
            key, _, value = line.partition(":")
            found[key] = int(value.split()[0])
    return found


def _hog(report: Pipe, gate: Gate) -> int:
    """Touch HOG_MIB of memory, report our resident size, then die when told."""
    block = bytearray(HOG_MIB << 20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    report.send({"rss_kb": _status_kb(os.getpid(), "VmRSS")})
    gate.wait()
    return 0


def _status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` line of ``/proc/PID/status``, None when the kernel prints none."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


@experiment("zombie-memory", "001", "a defunct process still occupies the system's memory")
def zombie_memory(lab: Lab) -> Verdict:
    """A child touches 128 MiB, then dies and stays a zombie."""
    report, gate = Pipe(), Gate()
    child = lab.fork(_hog, report, gate, name="hog")
    rss = report.recv()["rss_kb"]
    before = _meminfo()["AnonPages"]
    gate.release()
    lab.wait_state(child, "Z", 2.0)
    time.sleep(0.02)
    after = _meminfo()["AnonPages"]
    lab.ps("the hog has exited; nobody has waited for it", [child])
    zombie_rss = _status_kb(child, "VmRSS")
    with open(f"/proc/{child}/statm") as statm:
        pages = [int(n) for n in statm.read().split()]
    lab.reap(child)
    freed = (before - after) // 1024
    lab.say(
        f"alive, the child had VmRSS {rss // 1024} MiB; as a zombie its status has "
        f"{'no VmRSS line' if zombie_rss is None else f'VmRSS {zombie_rss} kB'} and its "
        f"statm reads {pages}"
    )
    lab.say(
        f"the machine's anonymous memory (AnonPages) fell by {freed} MiB when it died, "
        "before anyone reaped it (other processes move this figure too)"
    )
    lab.record(
        alive_rss_kb=rss,
        zombie_rss_kb=zombie_rss,
        zombie_statm=pages,
        anon_freed_mib=freed,
    )
    empty = zombie_rss is None and not any(pages)
    if empty and freed < HOG_MIB // 2:
        return Verdict(
            DEPENDS,
            f"the zombie maps nothing, but only {freed} MiB of the {HOG_MIB} MiB showed as "
            "freed: the machine was too busy to tell",
        )
    return decide(
        empty,
        Verdict(
            REFUTED,
            "the zombie holds no user memory: the kernel freed its address space "
            "when it exited, before any wait(); what stays is a task entry and a PID",
        ),
        Verdict(CONFIRMED, "the zombie still had memory mapped"),
    )


def _slab_objects() -> dict[str, tuple[int, int]] | None:
    """``cache -> (active objects, object size)`` from ``/proc/slabinfo`` (root only)."""
    try:
        with open("/proc/slabinfo") as info:
            lines = info.readlines()[2:]
    except OSError:
        return None
    return {f[0]: (int(f[1]), int(f[3])) for f in (line.split() for line in lines)}


def _per_zombie(
    before: dict[str, tuple[int, int]],
    during: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    count: int,
) -> dict[str, int]:
    """Slab caches that grew by one object per zombie and shrank by as many when reaped.

    Asking for both filters out most of what other processes of a busy
    machine allocate and free meanwhile.
    """
    kept = {}
    for cache, (objects, size) in during.items():
        grew = objects - before.get(cache, (objects, size))[0]
        shrank = objects - after.get(cache, (objects, size))[0]
        if all(count * 0.8 <= change <= count * 1.25 for change in (grew, shrank)):
            kept[cache] = size
    return kept


@experiment(
    "zombie-cost",
    "003",
    "a zombie gives up its memory and keeps only its slot in the process table",
)
def zombie_cost(lab: Lab) -> Verdict:
    """Measure what 200 zombies hold: PIDs, kernel memory, user memory."""
    info0, slab0 = _meminfo(), _slab_objects()
    with ZombieParent([ZombieSpec(code=0)] * ZOMBIES, name="many") as parent:
        time.sleep(0.05)  # let the exits' deferred frees (RCU) settle
        info1, slab1 = _meminfo(), _slab_objects()
        lab.ps(
            f"a parent holding {ZOMBIES} zombies (first three)", [parent.pid, *parent.zombies[:3]]
        )
        held = sum(r["state"] == "Z" for r in lab.children_rows(parent.pid))
        with open(f"/proc/{parent.zombies[0]}/statm") as statm:
            user_pages = sum(int(n) for n in statm.read().split())
    time.sleep(0.05)
    slab2 = _slab_objects()
    slab_kb = info1["Slab"] - info0["Slab"]
    stack_kb = info1["KernelStack"] - info0["KernelStack"]
    per: dict[str, Any] = {"slab_bytes": round(slab_kb * 1024 / ZOMBIES)}
    if slab0 is not None and slab1 is not None and slab2 is not None:
        per["caches"] = _per_zombie(slab0, slab1, slab2, ZOMBIES)
        per["cache_bytes"] = sum(per["caches"].values())
    lab.say(f"{held} zombies each held their PID; a zombie's statm counts {user_pages} pages")
    lab.say(
        f"Slab grew {slab_kb} kB (about {per['slab_bytes']} bytes a zombie) and KernelStack "
        f"{stack_kb} kB, machine-wide: other processes move these figures too"
    )
    if per.get("caches"):
        lab.say(
            "slab caches that grew by one object per zombie and shrank when they were "
            "reaped: "
            + ", ".join(f"{c} {s} B" for c, s in sorted(per["caches"].items()))
            + f" = {per['cache_bytes']} bytes each"
        )
    lab.record(
        zombies=ZOMBIES,
        zombies_holding_pids=held,
        zombie_user_pages=user_pages,
        slab_kb=slab_kb,
        kernel_stack_kb=stack_kb,
        per_zombie=per,
    )
    # The verdict rests on what each zombie shows (its /proc entry, its empty
    # statm); the kernel-memory figure is machine-wide and only sized here: a
    # busy machine forking meanwhile may hide task_struct among the caches.
    if "task_struct" in per.get("caches", {}):
        size = f"about {per['cache_bytes'] / 1024:.1f} KiB of kernel memory each: task_struct"
    else:
        size = f"Slab grew about {per['slab_bytes'] / 1024:.1f} KiB a zombie, machine-wide"
    return decide(
        held == ZOMBIES and user_pages == 0,
        Verdict(
            CONFIRMED,
            "each zombie kept its PID and its task entry (its /proc entry stayed, state Z; "
            f"{size}) and no user memory",
        ),
        Verdict(
            REFUTED,
            f"{ZOMBIES - held} of {ZOMBIES} zombies had no entry of their own, or a zombie "
            f"still counted {user_pages} pages of user memory",
        ),
    )


def _tasks() -> int:
    """Tasks in the whole system (threads and zombies), from /proc/loadavg."""
    with open("/proc/loadavg") as load:
        return int(load.read().split()[3].split("/")[1])


LIMIT = 12  # tasks the pids cgroup (or RLIMIT_NPROC margin) allows
_FRESH_UID_BASE = 2_000_000_000  # uids no account uses: RLIMIT_NPROC then counts only ours


def _pids_cgroup_root() -> str | None:
    """Where a child ``pids`` cgroup can be made: the v1 hierarchy, or v2 with pids enabled."""
    if os.path.exists("/sys/fs/cgroup/pids/cgroup.procs"):
        return "/sys/fs/cgroup/pids"
    try:
        with open("/sys/fs/cgroup/cgroup.subtree_control") as control:
            if "pids" in control.read().split():
                return "/sys/fs/cgroup"
    except OSError:
        return None
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as control:
        control.write(text)


def _fill(report: Pipe, gate: Gate, rlimit: str) -> int:
    """Fork zombies until fork fails; then reap them and fork again.

    *rlimit*: ``""`` (a cgroup limits us), ``"own"`` (RLIMIT_NPROC over our
    uid's tasks) or a uid to become first, one no process uses.
    """
    import resource  # noqa: PLC0415  (only this experiment needs it)

    if rlimit.isdigit():  # root: RLIMIT_NPROC does not bind us, so become a fresh uid
        os.setgroups([])
        os.setgid(int(rlimit))
        os.setuid(int(rlimit))
    if rlimit:
        limit = _own_tasks() + LIMIT
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        report.send({"nproc": limit})
    gate.wait()  # the lab has moved us into the cgroup
    zombies: list[int] = []
    error = None
    for _ in range(4 * LIMIT):  # bounded even if no limit applies
        try:
            pid = os.fork()
        except BlockingIOError as err:  # EAGAIN: the limit
            error = os.strerror(err.errno or 0)
            break
        if pid == 0:
            os._exit(0)
        zombies.append(pid)
    report.send({"zombies": zombies, "error": error})
    gate.wait()  # the lab looks at the full table
    for pid in zombies:
        os.waitpid(pid, 0)
    try:
        again = os.fork()
    except BlockingIOError:
        again = -1
    if again == 0:
        os._exit(0)
    if again > 0:
        os.waitpid(again, 0)
    report.send({"fork_after_reaping": again > 0})
    return 0


def _own_tasks() -> int:
    """Tasks whose real uid is ours, counted as RLIMIT_NPROC counts them."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields["Uid"].split()[0]) == uid:
            count += int(fields["Threads"])
    return count


@experiment(
    "pid-exhaustion",
    "003",
    "enough zombies use up the PIDs, and then no new process can be created",
)
def pid_exhaustion(lab: Lab) -> Verdict:
    """Fill a small limit with zombies (a pids cgroup as root, else RLIMIT_NPROC)."""
    root = _pids_cgroup_root() if lab.root else None
    report, gate = Pipe(), Gate()
    group = None
    if root is not None:
        group = os.path.join(root, f"undertaker-lab-{os.getpid()}-{time.monotonic_ns()}")
        os.mkdir(group)
        rlimit, where = "", f"a pids cgroup with pids.max {LIMIT}"
    elif lab.root:  # no pids cgroup to make: a uid of our own, never used by anyone
        rlimit = str(_FRESH_UID_BASE + time.monotonic_ns() % 100_000)
        where = f"RLIMIT_NPROC as unused uid {rlimit} (its tasks + {LIMIT})"
    else:
        rlimit, where = "own", f"RLIMIT_NPROC (our uid's tasks + {LIMIT})"
    filler = 0
    try:
        if group is not None:
            _write(os.path.join(group, "pids.max"), str(LIMIT))
        filler = lab.fork(_fill, report, gate, rlimit, name="filler")
        if group is not None:
            _write(os.path.join(group, "cgroup.procs"), str(filler))
        else:
            where = where.replace("RLIMIT_NPROC", f"RLIMIT_NPROC {report.recv()['nproc']}", 1)
        gate.release()
        seen = report.recv()
        lab.until(lambda: all(lab.state(p) == "Z" for p in seen["zombies"]), 1.0)
        current = _read_int(group, "pids.current") if group else None
        rows = lab.ps("the filler and its zombies when fork failed", [filler, *seen["zombies"]])
        gate.release()
        after = report.recv()
        lab.collect([filler])
        filler = 0
    finally:
        if filler:  # stopped early (Ctrl-C, the time budget): empty the cgroup first
            lab.collect([filler], timeout=0)
        if group is not None:
            _remove_group(group)
    held = sum(r["state"] == "Z" for r in rows)
    lab.say(
        f"inside {where}: {held} zombies, then fork() failed: {seen['error']}"
        + (f" (pids.current {current})" if current is not None else "")
    )
    lab.say(
        "after the filler reaped them, fork() "
        + ("worked again" if after["fork_after_reaping"] else "still failed")
    )
    lab.record(
        limit=where,
        zombies=held,
        fork_error=seen["error"],
        pids_current=current,
        fork_after_reaping=after["fork_after_reaping"],
    )
    return decide(
        seen["error"] is not None and held > 0 and after["fork_after_reaping"],
        Verdict(
            CONFIRMED,
            f"{held} zombies filled the limit and fork() failed with EAGAIN "
            "until they were reaped; on a whole machine the same happens at pid_max, "
            "or first at the container's pids.max",
        ),
        Verdict(REFUTED, "the zombies did not stop fork(), or reaping did not free it"),
    )


def _read_int(group: str, name: str) -> int:
    with open(os.path.join(group, name)) as control:
        return int(control.read())


def _remove_group(group: str) -> None:
    """Remove our cgroup once its last task is gone (the kernel frees it asynchronously)."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.rmdir(group)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


EXPERIMENTS = (zombie_memory, zombie_cost, pid_exhaustion)
