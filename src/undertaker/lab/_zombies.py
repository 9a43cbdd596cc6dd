"""How a zombie is made, and what does and does not remove it (articles 000, 001, 002, 004)."""

from __future__ import annotations

import multiprocessing
import os
import signal

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Skip,
    Verdict,
    decide,
    experiment,
    zombie_children,
)
from undertaker.prctl import become_subreaper
from undertaker.testing import ZombieParent, ZombieSpec


def _son() -> None:
    print("son", os.getpid())  # the article's target; our stdout is /dev/null


def _mp_father(report: Pipe, gate: Gate) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_son)
    proc.start()
    report.send({"child": proc.pid})
    gate.wait()  # the article's time.sleep(1000)
    proc.join()
    report.send({"exitcode": proc.exitcode})
    return 0


@experiment(
    "mp-unjoined",
    "000",
    "a multiprocessing.Process that ends while its parent sleeps without join() is a zombie",
)
def mp_unjoined(lab: Lab) -> Verdict:
    """The article's program: start a Process, never join, sleep."""
    report, gate = Pipe(), Gate()
    father = lab.fork(_mp_father, report, gate)
    son = report.recv()["child"]
    lab.wait_state(son, "Z", 2.0)
    row = lab.ps("while the father sleeps", [father, son])[1]
    zombie = row["state"] == "Z" and row["ppid"] == father
    lab.say(f"the son {son} shows state {row['state']} with PPID {row['ppid']} (the father)")
    gate.release()
    joined = report.recv()["exitcode"]
    gone = lab.ps("after the father calls join()", [father, son])[1]["state"] is None
    lab.say(
        f"join() returned exitcode {joined}; "
        + ("the zombie is gone: join() waited for it" if gone else "the son is still there")
    )
    lab.reap(father)
    lab.record(son_state=row["state"], joined_exitcode=joined, zombie=zombie)
    return decide(
        zombie,
        Verdict(CONFIRMED, "the son stayed in state Z until the father called join(), which waits"),
        Verdict(REFUTED, f"the son showed state {row['state']}, not Z, while the father slept"),
    )


@experiment("kill9-zombie", "001", "kill -9 cannot remove a zombie")
def kill9_zombie(lab: Lab) -> Verdict:
    """SIGKILL a zombie, then look at it again."""
    with ZombieParent([ZombieSpec(code=7)], name="father") as parent:
        zombie = parent.zombies[0]
        before = lab.ps("before kill -9", [parent.pid, zombie])[1]
        os.kill(zombie, signal.SIGKILL)  # a zombie of our own workload
        lab.say(f"kill({zombie}, SIGKILL) returned without error")
        lab.until(lambda: lab.state(zombie) != "Z", 0.1)  # give it every chance to go
        after = lab.ps("100 ms after kill -9", [parent.pid, zombie])[1]
    survived = after["state"] == "Z" and after["exit"] == before["exit"]
    lab.say(
        f"it still shows state {after['state']}, exit status still {after['exit']}: "
        "a signal to a dead process changes nothing"
        if survived
        else f"it now shows state {after['state']}, exit status {after['exit']}"
    )
    lab.record(state_after=after["state"], exit_before=before["exit"], exit_after=after["exit"])
    return decide(
        survived,
        Verdict(CONFIRMED, "the zombie was still there, with the same exit status, after SIGKILL"),
        Verdict(REFUTED, f"after SIGKILL the zombie showed state {after['state']}"),
    )


@experiment(
    "kill-parent",
    "001",
    "killing a zombie's parent removes the zombie: init adopts and reaps it",
)
def kill_parent(lab: Lab) -> Verdict:
    """SIGKILL the parent of two zombies, see who adopts them, let the adopter reap."""
    parent = ZombieParent([ZombieSpec(code=7), ZombieSpec(code=3)], name="father").start()
    try:
        zombies = parent.zombies
        lab.ps("before", [parent.pid, *zombies])
        os.kill(parent.pid, signal.SIGKILL)  # our own child, not yet reaped
        lab.wait_state(parent.pid, "Z", 2.0)
        rows = lab.ps("parent killed, not yet reaped", [parent.pid, *zombies])
        adopted = all(r["ppid"] == lab.adopter and r["state"] == "Z" for r in rows[1:])
        lab.say(
            f"after the parent died its zombies have PPID {rows[1]['ppid']}: {lab.adopter_name}"
        )
        reaped = lab.collect([parent.pid, *zombies])
    finally:
        parent.close()
    got = {pid: str(reaped[pid]) for pid in zombies if pid in reaped}
    lab.ps("after the adopter's wait()", [parent.pid, *zombies])
    lab.say(f"the adopter's wait() collected them: {', '.join(got.values()) or 'nothing'}")
    lab.record(adopted=adopted, adopter=lab.adopter, statuses=got)
    return decide(
        adopted and len(got) == len(zombies),
        Verdict(
            CONFIRMED,
            "the dead parent's zombies were re-parented to the adopter, whose wait() "
            "reaped them with their exit statuses",
        ),
        Verdict(REFUTED, "the zombies were not adopted and reaped after their parent died"),
    )


def _orphaning_parent(report: Pipe, gate: Gate) -> int:
    child = os.fork()
    if child == 0:
        gate.wait()
        os._exit(5)
    report.send({"child": child})
    return 0  # exit first: the child is orphaned while alive


@experiment(
    "parent-exited-zombie",
    "002",
    "a zombie forms when the parent has exited first and nobody accepts the child",
)
def parent_exited(lab: Lab) -> Verdict:
    """An orphan that exits later, against a child of a live parent that never waits."""
    report, gate = Pipe(), Gate()
    first = lab.fork(_orphaning_parent, report, gate)
    orphan = report.recv()["child"]
    lab.reap(first)
    adopted = lab.until(lambda: lab.rows([orphan])[0]["ppid"] == lab.adopter, 1.0)
    lab.ps("parent exited first; the child lives on", [first, orphan])
    gate.release()
    reaped = lab.collect([orphan])
    lab.ps("the orphan exited; its adopter reaped it", [orphan])
    lab.say(
        f"the orphan {orphan} was adopted by {lab.adopter_name} and reaped at once "
        f"({reaped.get(orphan)})"
    )
    with ZombieParent([ZombieSpec(code=0)], name="living") as living:
        row = lab.ps("a live parent that never waits", [living.pid, *living.zombies])[1]
    lab.say(f"the child of a live parent that never waits stays {row['state']}")
    orphan_reaped = orphan in reaped and adopted
    lab.record(orphan_adopted=adopted, orphan_reaped=orphan_reaped, live_parent_child=row["state"])
    return decide(
        orphan_reaped and row["state"] == "Z",
        Verdict(
            REFUTED,
            "the orphan was adopted and reaped when it exited; a zombie lasts only "
            "while its parent lives and does not wait",
        ),
        Verdict(CONFIRMED, "the orphan was left a zombie after its parent had exited")
        if not orphan_reaped
        else Verdict(
            REFUTED,
            f"the orphan was adopted and reaped, and a live parent's unwaited child showed "
            f"{row['state']}, not Z",
        ),
    )


def _sleeper(gate: Gate) -> int:
    gate.wait()
    return 0


def _lost_child(report: Pipe, gate: Gate) -> int:
    grandchild = os.fork()
    if grandchild == 0:
        gate.wait()
        os._exit(0)
    report.send({"orphan_under_subreaper": grandchild})
    return 0


def _subreaper(report: Pipe, gate: Gate) -> int:
    become_subreaper()
    child = os.fork()
    if child == 0:
        os._exit(_lost_child(report, gate))
    os.waitpid(child, 0)
    gate.wait()
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return 0


def _founder(report: Pipe, gate: Gate) -> int:
    plain = os.fork()
    if plain == 0:
        os._exit(_sleeper(gate))
    keeper = os.fork()
    if keeper == 0:
        os._exit(_subreaper(report, gate))
    report.send({"plain_orphan": plain, "subreaper": keeper})
    return 0


@experiment("orphan-adopter", "004", "orphans are adopted by init, PID 1")
def orphan_adopter(lab: Lab) -> Verdict:
    """Orphan one process with no subreaper above it and one below a subreaper."""
    report, gate = Pipe(), Gate()
    founder = lab.fork(_founder, report, gate)
    ids: dict[str, int] = {}
    ids.update(report.recv())
    ids.update(report.recv())
    lab.reap(founder)
    plain, keeper, lost = ids["plain_orphan"], ids["subreaper"], ids["orphan_under_subreaper"]
    lab.until(lambda: [r["ppid"] for r in lab.rows([plain, lost])] == [lab.adopter, keeper], 1.0)
    rows = lab.ps("after their parents exited", [founder, plain, keeper, lost])
    to_init, to_keeper = rows[1]["ppid"], rows[3]["ppid"]
    lab.say(
        f"the orphan with no subreaper below the lab went to PID {to_init} ({lab.adopter_name})"
    )
    lab.say(f"the orphan below subreaper {keeper} went to PID {to_keeper}")
    gate.release(3)
    lab.collect([plain, keeper])
    lab.record(plain_orphan_ppid=to_init, subreaper=keeper, orphan_under_subreaper_ppid=to_keeper)
    if to_init == 1 and to_keeper == 1:
        return Verdict(CONFIRMED, "both orphans went to PID 1")
    if to_keeper == keeper:
        return Verdict(
            DEPENDS,
            "orphans go to the nearest ancestor that is a child subreaper "
            "(PR_SET_CHILD_SUBREAPER), and to their namespace's PID 1 only "
            "when there is none",
        )
    return Verdict(REFUTED, f"the orphans went to PIDs {to_init} and {to_keeper}, not to PID 1")


def _double_forker(report: Pipe, later: Gate, done: Gate) -> int:
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            later.wait()
            os._exit(0)
        report.send({"child": os.getpid(), "grandchild": grandchild})
        os._exit(0)
    status = os.waitpid(child, 0)[1]
    report.send({"child_status": status})
    done.wait()  # released once the grandchild has ended, while we still run
    report.send({"zombie_children": len(zombie_children())})
    done.wait()
    return 0


@experiment(
    "double-fork",
    "004",
    "fork twice and wait for the middle child: the grandchild is init's, never our zombie",
)
def double_fork(lab: Lab) -> Verdict:
    """The article's method (4)."""
    report, later, done = Pipe(), Gate(), Gate()
    parent = lab.fork(_double_forker, report, later, done)
    ids = report.recv()
    waited = report.recv()["child_status"]
    grandchild = ids["grandchild"]
    lab.until(lambda: lab.rows([grandchild])[0]["ppid"] == lab.adopter, 1.0)
    row = lab.ps("middle child reaped by the parent", [parent, ids["child"], grandchild])[2]
    later.release()  # the grandchild exits
    reaped = lab.collect([grandchild])
    done.release()  # now the parent counts its zombie children
    zombies = report.recv()["zombie_children"]
    done.release()
    lab.collect([parent])
    lab.say(
        f"the grandchild's parent became PID {row['ppid']} ({lab.adopter_name}); when it "
        f"exited, the adopter reaped it and the parent had {zombies} zombie children"
    )
    adopted = row["ppid"] == lab.adopter and grandchild in reaped
    lab.record(middle_status=waited, grandchild_ppid=row["ppid"], parent_zombies=zombies)
    return decide(
        adopted and zombies == 0,
        Verdict(
            CONFIRMED,
            "the grandchild was adopted and reaped by the adopter; the parent never held a zombie",
        ),
        Verdict(REFUTED, "the grandchild was not adopted, or the parent held a zombie"),
    )


@experiment(
    "no-reboot",
    "001",
    "when killing the parent is not wanted, only a reboot clears a zombie",
)
def no_reboot(lab: Lab) -> Verdict:
    """Make the live parent reap its zombies (undertaker reap --method ptrace)."""
    from undertaker.remedy import ReapRefused, reap_via_ptrace  # noqa: PLC0415

    with ZombieParent([ZombieSpec(code=7)] * 3, name="stubborn") as parent:
        lab.ps("a parent that never waits", [parent.pid, *parent.zombies])
        try:
            result = reap_via_ptrace(parent.pid, parent.zombies)
        except ReapRefused as refused:
            raise Skip(f"ptrace not allowed here: {refused}") from None
        rows = lab.ps(
            "after reap_via_ptrace (the parent called wait4 itself)", [parent.pid, *parent.zombies]
        )
    gone = all(r["state"] is None for r in rows[1:])
    alive = rows[0]["state"] not in (None, "Z")
    lab.say(
        f"the parent kept running (state {rows[0]['state']}) and its zombies are gone; "
        f"it was stopped {1000 * max(result.stops):.1f} ms at most"
    )
    lab.record(zombies_gone=gone, parent_alive=alive, longest_stop_ms=1000 * max(result.stops))
    return decide(
        gone and alive,
        Verdict(
            REFUTED,
            "the zombies were reaped inside their running parent (ptrace made it call "
            "wait4), with no reboot and no kill",
        ),
        Verdict(CONFIRMED, "the zombies could not be removed with their parent alive"),
    )


EXPERIMENTS = (
    mp_unjoined,
    kill9_zombie,
    kill_parent,
    parent_exited,
    orphan_adopter,
    double_fork,
    no_reboot,
)
