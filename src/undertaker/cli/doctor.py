"""``undertaker doctor``: can this machine reap, and can our remedies work here."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from undertaker.cli._common import EXIT_FOUND, EXIT_OK, add_color_option, add_proc_option
from undertaker.cli._coverage import assess
from undertaker.cli._style import Style, printable, use_color
from undertaker.diagnose._doctor import ACTION, OK, examine
from undertaker.proc import scan

if TYPE_CHECKING:
    import argparse

DOCTOR_JSON_VERSION = 1


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor``."""
    doctor = subs.add_parser(
        "doctor",
        help="check this machine: who reaps orphans, PID pressure, whether remedies can work",
        description="Check whether we are PID 1 or a subreaper, whether this PID "
        "namespace's PID 1 reaps (its SIGCHLD disposition and zombies), PID and task "
        "pressure (pid_max, threads-max, the pids cgroup), and whether the reaping "
        "remedies can work (Yama ptrace_scope, CAP_SYS_PTRACE, pidfd, seccomp). Each "
        "finding says what it means and what to do.",
        epilog="Exit status: 0 all well, 1 a finding needs action, 2 error, 141 output "
        "pipe closed early. "
        "JSON schema: docs/json.md.",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    add_proc_option(doctor)
    add_color_option(doctor)


def run(args: argparse.Namespace) -> int:
    """Examine and print; exit 1 when a finding needs action."""
    snapshot = scan(args.proc, owners=False, split=True)
    coverage = assess(snapshot)
    used = coverage.pid_limit.used if coverage.pid_limit is not None else None
    findings = examine(
        snapshot, pids_used=used, view=coverage.notes(), incomplete=coverage.incomplete
    )
    status = EXIT_FOUND if any(f.level == ACTION for f in findings) else EXIT_OK
    if args.json:
        doc = {"version": DOCTOR_JSON_VERSION, "findings": [f._asdict() for f in findings]}
        sys.stdout.write(json.dumps(doc) + "\n")
        return status
    style = Style(use_color(args.color))
    for finding in findings:
        mark = {OK: "ok", ACTION: style.zombie("ACTION")}.get(finding.level, style.blame("note"))
        print(f"[{mark}] {printable(finding.fact)}")  # it may hold a process's raw name
        if finding.advice:
            print(f"       {finding.advice}")
    return status
