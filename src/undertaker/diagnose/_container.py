"""Which container or systemd service a process lives in, from its cgroup paths."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import re


class Container(NamedTuple):
    """A container named by a cgroup path."""

    runtime: str  # docker, containerd, cri-o, podman, kubernetes
    id: str | None  # the container id (64 hex digits), when the path holds one
    pod_uid: str | None  # the Kubernetes pod UID, when the path holds one

    @property
    def short(self) -> str:
        """``docker 0123456789ab``: the runtime and the id's first 12 digits, as docker ps."""
        text = self.runtime
        if self.id:
            text += f" {self.id[:12]}"
        if self.pod_uid:
            text += f" (pod {self.pod_uid})"
        return text


@functools.cache
def _patterns() -> tuple[tuple[tuple[str, re.Pattern[str]], ...], re.Pattern[str]]:
    # Compiled on first use: ``why`` with no zombie never pays for ``re``.
    import re  # noqa: PLC0415

    cid = r"([0-9a-f]{64})"
    # Most specific first: a Kubernetes pod path holds a runtime's scope too.
    runtimes = (
        ("cri-o", re.compile(r"crio-(?:conmon-)?" + cid)),
        ("containerd", re.compile(r"cri-containerd-" + cid)),
        ("podman", re.compile(r"libpod-(?:conmon-)?" + cid)),
        ("docker", re.compile(r"docker[-/]" + cid)),
        ("kubernetes", re.compile(r"/kubepods[^/]*/(?:[^/]+/)*pod[^/]+/" + cid)),
    )
    # pod UIDs appear as pod<uid>, - (cgroupfs) or _ (systemd driver) between groups.
    pod = re.compile(
        r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
    )
    return runtimes, pod


def container_of(paths: list[str]) -> Container | None:
    """Name the container of a process from its cgroup paths, or None for none seen.

    >>> container_of(["/system.slice/docker-" + "ab" * 32 + ".scope"]).short
    'docker abababababab'
    """
    runtimes, pod_pattern = _patterns()
    for path in paths:
        pod = pod_pattern.search(path)
        pod_uid = pod.group(1).replace("_", "-") if pod else None
        for runtime, pattern in runtimes:
            found = pattern.search(path)
            if found:
                cid = next(g for g in found.groups() if g)
                return Container(runtime, cid, pod_uid)
        if pod_uid:
            return Container("kubernetes", None, pod_uid)
    return None


def _unit_name(name: str) -> bool:
    # systemd's unit name characters: anything else is no unit, and no command
    # is built from it.
    return bool(name) and all(c.isascii() and (c.isalnum() or c in ":-_.@\\") for c in name)


def service_of(paths: list[str]) -> str | None:
    """The system service unit a process runs in, from its cgroup paths, or None.

    A user's units (under ``user@UID.service``) are left out: that user restarts them.

    >>> service_of(["/", "/system.slice/nginx.service"])
    'nginx.service'
    >>> service_of(["/user.slice/user-1000.slice/user@1000.service/app.slice/a.service"])
    """
    for path in paths:
        parts = path.split("/")
        if any(part.startswith("user@") for part in parts):
            continue
        units = [part for part in parts if part.endswith(".service") and _unit_name(part)]
        if units:
            return units[-1]
    return None
