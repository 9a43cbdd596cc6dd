"""``undertaker exporter`` on captured trees (golden files) and on real zombies."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exporter_helpers import NamespaceExporter, parse_exposition
from helpers import UNDERTAKER, cli, needs_namespace, run_hidden_as_nobody, run_in_namespace
from test_cgroup_pids import PARENT as PIDS_CGROUP
from test_cgroup_pids import run_limited
from undertaker.exporter import read_table
from undertaker.proc import scan

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = {  # captured tree -> golden exposition (and the options it was made with)
    "proc": ("exporter/proc-fixture.prom", ["--top", "1"]),
    "exporter/proc": ("exporter/containers.prom", []),
}
# Series that depend on the clock or the interpreter, checked apart.
VOLATILE = re.compile(
    r"^undertaker_(oldest_zombie_age_seconds|table_age_seconds|scrape_duration_seconds"
    r"|build_info)\b"
)


def _stable(exposition: str) -> str:
    return "".join(
        line + "\n"
        for line in exposition.splitlines()
        if not VOLATILE.match(line.removeprefix("# HELP ").removeprefix("# TYPE "))
    )


@pytest.mark.smoke
@pytest.mark.parametrize("tree", sorted(GOLDEN))
def test_golden_exposition(tree: str) -> None:
    """One scrape of a captured /proc tree is exactly the golden file (volatile series aside)."""
    golden, options = GOLDEN[tree]
    done = cli("exporter", "--once", "--proc", str(FIXTURES / tree), *options)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # To regenerate after a deliberate change: tests/fixtures/README.md.
    assert _stable(done.stdout) == (FIXTURES / golden).read_text()
    values = parse_exposition(done.stdout)
    assert values["undertaker_oldest_zombie_age_seconds"] >= 0
    assert 0 <= values["undertaker_scrape_duration_seconds"] < 10
    assert any(key.startswith("undertaker_build_info{") for key in values)


@needs_namespace
def test_live_counts_match_real_zombies() -> None:
    """Zombies by parent, a leader apart (never a zombie), every state present, all at 0 too."""
    with NamespaceExporter([("zalpha", 3), ("zbeta", 2)], leaders=1) as exporter:
        values = exporter.metrics()
        start = time.monotonic()
        time.sleep(0.2)
        later = exporter.metrics()
        between = time.monotonic() - start
    # The time of death is estimated once: the age grows exactly as the clock does.
    grown = (
        later["undertaker_oldest_zombie_age_seconds"]
        - values["undertaker_oldest_zombie_age_seconds"]
    )
    assert abs(grown - between) < 0.1
    assert values["undertaker_zombies"] == 5
    assert values["undertaker_zombie_leaders"] == 1
    assert values['undertaker_zombies_by_parent{parent="zalpha"}'] == 3
    assert values['undertaker_zombies_by_parent{parent="zbeta"}'] == 2
    assert values['undertaker_zombies_by_parent{parent="other"}'] == 0
    # The leader shows Z in /proc, so the state count has it; the zombie count does not.
    assert values['undertaker_processes{state="Z"}'] == 6
    for letter in "RSDTtXZPI":
        assert f'undertaker_processes{{state="{letter}"}}' in values
    assert values["undertaker_view_complete"] == 1
    assert values['undertaker_table_source_info{source="scan"}'] == 1
    assert 0 < values["undertaker_oldest_zombie_age_seconds"] < 60


@needs_namespace
def test_no_zombies_still_exports_zero_series() -> None:
    """With no zombie, the zombie series exist at 0 (alerts on absent series never fire)."""
    with NamespaceExporter([]) as exporter:
        values = exporter.metrics()
    assert values["undertaker_zombies"] == 0
    assert values["undertaker_zombie_leaders"] == 0
    assert values["undertaker_oldest_zombie_age_seconds"] == 0
    assert values['undertaker_processes{state="Z"}'] == 0
    assert values['undertaker_zombies_by_parent{parent="other"}'] == 0


@needs_namespace
def test_label_values_are_bounded() -> None:
    """--top 2 keeps the two largest parents and sums the rest into other."""
    parents = [("zone", 4), ("ztwo", 3), ("zthree", 2), ("zfour", 1)]
    with NamespaceExporter(parents, args=("--top", "2")) as exporter:
        values = exporter.metrics()
    by_parent = {k: v for k, v in values.items() if k.startswith("undertaker_zombies_by_parent")}
    assert by_parent == {
        'undertaker_zombies_by_parent{parent="zone"}': 4,
        'undertaker_zombies_by_parent{parent="ztwo"}': 3,
        'undertaker_zombies_by_parent{parent="other"}': 3,
    }


@needs_namespace
def test_http_paths_are_read_only() -> None:
    """/metrics (gzip on request), / and /healthz answer; writes are refused, unknown paths 404."""
    with NamespaceExporter([("zweb", 1)]) as exporter:
        status, headers, body = exporter.get("/metrics", **{"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert headers.get("Content-Encoding") == "gzip"
        assert b"undertaker_zombies 1.0" in gzip.decompress(body)
        assert exporter.get("/healthz")[:3:2] == (200, b"ok\n")
        status, headers, body = exporter.get("/")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert b"1 zombie under 1 parent" in body
        assert exporter.get("/nothing")[0] == 404
        for method in ("POST", "PUT", "DELETE"):
            with socket.create_connection(("127.0.0.1", exporter.port), timeout=10) as sock:
                sock.sendall(f"{method} /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode())
                assert sock.recv(64).startswith(b"HTTP/1.0 405")


@needs_namespace
def test_scrapes_succeed_while_processes_churn() -> None:
    """Processes exiting mid-scan are skipped and counted, never a failed scrape."""
    code = r"""
import os, subprocess, sys, time
from undertaker.exporter import ScanSource, ZombieCollector
FORKER = (
    "import os\nfor _ in range(1500):\n"
    "    pid = os.fork()\n    if pid == 0: os._exit(0)\n    os.waitpid(pid, 0)"
)
kids = [subprocess.Popen([sys.executable, "-c", FORKER]) for _ in range(2)]
collector = ZombieCollector(ScanSource())
scrapes = vanished = 0
while any(kid.poll() is None for kid in kids):
    families = {f.name: f for f in collector.collect()}
    scrapes += 1
    skipped = families["undertaker_scan_skipped_processes"].samples
    vanished += sum(s.value for s in skipped if s.labels["reason"] == "vanished")
print(scrapes, int(vanished), collector.errors)
"""
    done = run_in_namespace(code, timeout=120)
    assert done.returncode == 0, done.stderr
    scrapes, vanished, errors = map(int, done.stdout.split())
    assert scrapes > 10
    assert errors == 0
    assert vanished > 0  # thousands of exits during the scrapes: some fell mid-scan


@needs_namespace
def test_non_root_under_hidepid_says_what_it_missed() -> None:
    """As nobody over hidepid=invisible: the scrape works, the view is marked incomplete."""
    out = run_hidden_as_nobody({"once": ["exporter", "--once"]})
    status, stdout, stderr = out["once"]
    assert status == 0, stderr
    values = parse_exposition(stdout)
    assert values["undertaker_view_complete"] == 0
    assert values["undertaker_zombies"] >= 0
    # The kernel's task count is blind to hidepid: the hidden tasks show up as unseen
    # (compared only in the initial PID namespace, where both count the same tasks).
    if os.readlink("/proc/self/ns/pid") == "pid:[4026531836]":
        assert values["undertaker_tasks_unseen"] > 0
    else:
        assert "undertaker_tasks_unseen" not in values


@pytest.mark.skipif(
    os.geteuid() != 0 or os.readlink("/proc/self/ns/pid") != "pid:[4026531836]",
    reason="needs root in the initial PID namespace (a complete view)",
)
def test_nothing_is_unseen_when_nothing_is_hidden() -> None:
    """Tasks born after the scan are not "unseen": with a complete view the gauge says 0."""
    snapshot = scan(owners=False)
    born = [subprocess.Popen(["sleep", "30"]) for _ in range(30)]  # after the scan
    try:
        reading = read_table(snapshot)
    finally:
        for proc in born:
            proc.kill()  # our own children
            proc.wait()
    assert reading.complete
    assert reading.kernel_tasks is not None  # counted after the scan: the 30 are in it
    assert reading.tasks_unseen == 0


@pytest.mark.skipif(PIDS_CGROUP is None, reason="needs root and a writable pids cgroup")
def test_pids_cgroup_limit_is_exported() -> None:
    """In a cgroup with pids.max 50, the scrape exports the limit and the count against it."""
    done, _ = run_limited(50, "exporter", "--once")
    assert done.returncode == 0, done.stderr
    values = parse_exposition(done.stdout)
    assert values["undertaker_cgroup_pids_limit"] == 50
    assert 1 <= values["undertaker_cgroup_pids_current"] <= 50


def test_bad_input_is_one_line() -> None:
    """A bad --listen, a port in use and an unreadable /proc: one line each, exit 2."""
    done = cli("exporter", "--listen", "nonsense")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "not ADDR:PORT" in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("exporter", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("(address in use: pick another --listen)")
    assert done.stderr.count("\n") == 1
    done = cli("exporter", "--once", "--proc", "/nonexistent")
    assert done.returncode == 2
    assert (
        done.stderr
        == "undertaker exporter: error: cannot read /nonexistent: No such file or directory\n"
    )
    # The scrape itself still answered, and counted the error.
    assert parse_exposition(done.stdout)["undertaker_scrape_errors_total"] == 1
    assert "undertaker_zombies" not in parse_exposition(done.stdout)


def test_sigterm_stops_the_server_cleanly() -> None:
    """Serving until SIGTERM, then exit 0 with nothing more on stderr (as systemd expects).

    Not even after scrapers hung up mid-request (a Prometheus scrape timeout):
    the server's answer then meets EPIPE or ECONNRESET, which is routine.
    """
    server = subprocess.Popen(
        [*UNDERTAKER, "exporter", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        assert line.startswith("undertaker exporter: listening on http://127.0.0.1:")
        url = line.split()[-1].replace("/metrics", "/healthz")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.0\r\n")  # unfinished: EOF ends the headers
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, not a clean close
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310  (loopback)
            assert response.read() == b"ok\n"
        time.sleep(0.5)  # the last answers to the reset clients are written by now
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert server.stderr.read() == ""
    finally:
        if server.poll() is None:
            server.kill()  # our own child
            server.wait()
        if server.stderr is not None:
            server.stderr.close()


def test_missing_prometheus_client_names_the_extra() -> None:
    """Without prometheus_client: one line naming the extra, exit 10, no traceback."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from undertaker.cli import main; sys.exit(main(['exporter', '--once']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 10
    assert done.stderr == (
        "undertaker exporter: error: prometheus_client is not installed: "
        "pip install 'undertaker[exporter]'\n"
    )


@pytest.mark.parametrize("argv", [["ps"], ["run", "--", "true"], ["tree"], ["why"]])
def test_other_commands_never_import_prometheus_client(argv: list[str]) -> None:
    """Only the exporter loads prometheus_client (and HTML or HTTP servers)."""
    code = (
        "import os, sys, json, atexit\n"
        "real_exit = os._exit\n"
        "def report(*_):\n"
        "    sys.stderr.write(json.dumps(sorted(sys.modules)) + '\\n'); sys.stderr.flush()\n"
        "def spy(code):\n"
        "    report(); real_exit(code)\n"
        "os._exit = spy; atexit.register(report)\n"
        f"sys.argv = ['undertaker', *{argv!r}]\n"
        "from undertaker.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "undertaker.cli" in modules
    assert not {"prometheus_client", "undertaker.exporter", "http.server"} & modules


chromium = shutil.which("chromium") or shutil.which("chromium-browser")


@needs_namespace
@pytest.mark.skipif(chromium is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_page_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Chromium loads / and the zombies table in its DOM names our parents."""
    from html.parser import HTMLParser  # noqa: PLC0415

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.in_table = self.in_cell = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "table" and ("id", "zombies") in attrs:
                self.in_table = True
            elif self.in_table and tag == "tr":
                self.rows.append([])
            elif self.in_table and tag in ("td", "th"):
                self.in_cell = True
                self.rows[-1].append("")

        def handle_endtag(self, tag: str) -> None:
            if tag == "table":
                self.in_table = False
            elif tag in ("td", "th"):
                self.in_cell = False

        def handle_data(self, data: str) -> None:
            if self.in_cell:
                self.rows[-1][-1] += data

    with NamespaceExporter([("zbrowse", 3), ("zother", 1)]) as exporter:
        done = subprocess.run(
            # In a PID namespace of its own: its helper processes die with it.
            ["unshare", "--pid", "--fork", "--kill-child", chromium, "--headless", "--no-sandbox",
             "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path}", "--dump-dom", f"http://{exporter.address}/"],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        parents = sorted(exporter.parents)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = Cells()
    cells.feed(done.stdout)
    header, *rows = cells.rows
    assert header == ["PPID", "PARENT", "ZOMBIES", "OLDEST", "EXIT STATUS"]
    assert sorted(int(row[0]) for row in rows) == parents
    assert [int(row[2]) for row in rows] == [3, 1]
    assert [row[1] for row in rows] == ["zbrowse", "zother"]  # names, never command lines
    assert all(row[4] == f"exited 3 x{row[2]}" if row[2] != "1" else "exited 3" for row in rows)


def test_help_lists_exporter_and_fleet() -> None:
    """Both subcommands are registered."""
    done = subprocess.run(
        [*UNDERTAKER, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert re.search(r"^\s+exporter\s", done.stdout, re.MULTILINE)
    assert re.search(r"^\s+fleet\s", done.stdout, re.MULTILINE)
