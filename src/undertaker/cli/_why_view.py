"""``undertaker why`` as text: per parent, the evidence, the verdict, the ranked fixes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from undertaker.cli._style import Style, duration, plural, printable
from undertaker.diagnose import CODE, mask_names, sigchld_disposition
from undertaker.diagnose._signals import has_sigchld

if TYPE_CHECKING:
    from undertaker.diagnose import Evidence, Explanation, LeaderReport, ParentReport

_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "uninterruptible sleep",
    "T": "stopped",
    "t": "traced (tracing stop)",
    "Z": "zombie leader (main thread exited)",
    "I": "idle",
}


def _names(mask: int) -> str:
    return ", ".join(mask_names(mask)) or "none"


def _sigchld(ev: Evidence) -> str:
    status = ev.status
    assert status is not None  # noqa: S101  (only called when read)
    text = sigchld_disposition(status.sig_ign, status.sig_cgt)
    if ev.live_threads:
        text += f"; blocked in {ev.blocked_threads} of {ev.live_threads} live threads"
    elif has_sigchld(status.sig_blk):
        text += "; blocked in the main thread"
    if ev.sigchld_pending:
        text += "; one pending"
    return text


def _where(ev: Evidence) -> str:
    parts = []
    if ev.syscall is not None and ev.syscall.running:
        parts.append("on a CPU")
    elif ev.syscall_name:
        parts.append(f"in {ev.syscall_name}()")
    if ev.wchan:
        parts.append(f"wchan {ev.wchan}")
    return ", ".join(parts) or "unknown"


def _evidence_rows(ev: Evidence) -> list[tuple[str, str]]:
    status = ev.status
    if status is None:
        return []
    rows = [
        ("state", f"{status.state} ({_STATES.get(status.state, '?')}), {_where(ev)}"),
        ("SIGCHLD", _sigchld(ev)),
        ("caught", _names(status.sig_cgt)),
        ("ignored", _names(status.sig_ign)),
        ("blocked", _names(status.sig_blk) + " (main thread)"),
    ]
    if ev.frozen:
        rows.append(("frozen", f"yes, by {printable(ev.frozen)}"))
    if status.tracer_pid:
        rows.append(("tracer", f"{status.tracer_pid} ({printable(ev.tracer_comm or '?')})"))
    if len(status.nspid) > 1:
        nested = " > ".join(map(str, status.nspid))
        init = ", PID 1 of its namespace" if ev.is_namespace_init else ""
        rows.append(("namespace", f"NSpid {nested}{init}"))
    if ev.adopted:
        proof = f"{ev.adopted} of its zombies were forked in another session, so by another process"
        rows.append(("subreaper", f"yes: {proof}: adopted orphans"))
    if ev.container is not None:
        rows.append(("container", ev.container.short))
    if ev.reaped_before is not None:
        rows.append(("reaped before", "yes" if ev.reaped_before else "never (no waited-for child)"))
    if ev.runtime:
        rows.append(("runtime", f"{ev.runtime} (from its command line)"))
    if ev.forked_without_exec:
        count = ev.forked_without_exec
        rows.append(
            (
                "forked",
                f"{count} {plural(count, 'zombie')} share its name: probably forked without exec",
            )
        )
    if status.seccomp:
        rows.append(("seccomp", "strict" if status.seccomp == 1 else "filter"))
    return rows


def _header(report: ParentReport, now: float) -> str:
    ev = report.evidence
    zombies = ev.zombies
    first = min(zombies, key=lambda z: z.since) if zombies else None
    oldest = first.since if first is not None else now
    mark = "~" if first is not None and first.exited_at is not None and not first.exact else ""
    statuses: dict[str, int] = {}
    for zombie in zombies:
        text = str(zombie.status) if zombie.status is not None else "unknown"
        statuses[text] = statuses.get(text, 0) + 1
    exits = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in statuses.items())
    who = " ".join(ev.cmdline) if ev.cmdline else (ev.status.name if ev.status else "?")
    return (
        f"pid {ev.pid} ({printable(who)[:100]}) holds {len(zombies)} "
        f"{plural(len(zombies), 'zombie')}, oldest dead {mark}{duration(now - oldest)}: {exits}"
    )


def render_parent(report: ParentReport, style: Style, now: float) -> list[str]:
    """The block for one parent: header, evidence, verdict, fixes."""
    ev = report.evidence
    diag = report.diagnosis
    lines = [style.bold(_header(report, now))]
    pids = ", ".join(str(z.process.pid) for z in ev.zombies[:20])
    more = f" (+{len(ev.zombies) - 20})" if len(ev.zombies) > 20 else ""
    lines.append(f"  zombies        {pids}{more}")
    lines += [f"  {key:<14} {value}" for key, value in _evidence_rows(ev)]
    if report.growth is not None:
        g = report.growth
        if g.gone:
            change = (
                f"parent exited during the watch; {g.remaining} of its {g.before} zombies "
                "remain (adopted, still unreaped)"
            )
        else:
            trend = (
                "growing" if g.after > g.before else "shrinking" if g.after < g.before else "steady"
            )
            change = f"{g.before} -> {g.after} zombies ({trend})"
        lines.append(f"  {f'over {g.seconds:g}s':<14} {change}")
    lines += [style.dim(f"  could not read: {what}") for what in ev.unreadable]
    lines.append(f"  verdict        {style.zombie(diag.verdict)}: {printable(diag.reason)}")
    if diag.fixes:
        lines.append("  fixes, least disruptive first:")
    for rank, fix in enumerate(diag.fixes, 1):
        tag = "code" if fix.kind == CODE else "now"
        lines.append(f"    {rank}. [{tag}] {printable(fix.summary)}")
        lines += [f"         {style.blame(printable(line))}" for line in fix.how.splitlines()]
    return lines


def render_leader(report: LeaderReport, style: Style) -> list[str]:
    """The block for a zombie leader."""
    proc = report.process
    return [
        style.bold(f"pid {proc.pid} ({printable(proc.comm)}) is a zombie leader"),
        f"  verdict        {style.leader(report.diagnosis.verdict)}: {report.diagnosis.reason}",
    ]


def render_explanation(
    found: Explanation, style: Style, now: float, *, incomplete: bool = False
) -> str:
    """The whole text answer; *incomplete*: the scan missed processes, so none is no all-clear."""
    blocks = [render_parent(r, style, now) for r in found.parents]
    blocks += [render_leader(r, style) for r in found.leaders]
    if not blocks:
        blocks.append(["no zombies seen: the view is incomplete" if incomplete else "no zombies"])
    lines: list[str] = []
    for block in blocks:
        lines += [*block, ""]
    lines += [printable(line) for line in found.quiet]  # they hold a raw comm
    return "\n".join(lines).rstrip("\n")
