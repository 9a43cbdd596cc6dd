"""The deploy files: alert rules under promtool, the DaemonSet, the unit, the image's init."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, needs_namespace
from undertaker.cli._parser import build_parser
from undertaker.cli.exporter import DEFAULT_PORT

DEPLOY = REPO / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (.ci/run installs it)")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


@needs_promtool
def test_alert_rules_check_and_unit_tests_pass() -> None:
    """promtool accepts the rules and their unit tests (pending, firing, resolved) pass."""
    rules = DEPLOY / "prometheus"
    done = _promtool("check", "rules", "alerts.yml", cwd=rules)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout
    done = _promtool("test", "rules", "alerts_test.yml", cwd=rules)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {r["alert"] for g in yaml.safe_load((rules / "alerts.yml").read_text())["groups"]
             for r in g["rules"]}  # fmt: skip
    tested = set(re.findall(r"alertname: (\w+)", (rules / "alerts_test.yml").read_text()))
    assert names == tested == {
        "ZombiesPresent", "ZombiesGrowing", "PidTableFilling", "UndertakerExporterDown",
        "UndertakerScrapeErrors",
    }  # fmt: skip


@needs_promtool
def test_a_wrong_alert_expectation_fails(tmp_path: Path) -> None:
    """Negative control: the unit tests can fail (zombies for 5 minutes do not fire)."""
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path)
    (tmp_path / "wrong.yml").write_text(
        "rule_files: [alerts.yml]\nevaluation_interval: 1m\ntests:\n"
        "  - interval: 1m\n"
        "    input_series: [{series: 'undertaker_zombies{instance=\"a\"}', values: '3x10'}]\n"
        "    alert_rule_test:\n"
        "      - {eval_time: 5m, alertname: ZombiesPresent, exp_alerts: [{exp_labels: {}}]}\n"
    )
    assert _promtool("test", "rules", "wrong.yml", cwd=tmp_path).returncode == 1


def _documents() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "daemonset.yaml").read_text())
    return {doc["kind"]: doc for doc in docs}


def test_daemonset_has_what_a_cluster_requires() -> None:
    """hostPID, read-only root, non-root, no capability, limits, probes, scrape annotations."""
    docs = _documents()
    assert set(docs) == {"Namespace", "DaemonSet", "Service"}
    ds = docs["DaemonSet"]
    assert ds["apiVersion"] == "apps/v1"
    assert ds["metadata"]["namespace"] == docs["Namespace"]["metadata"]["name"]
    template = ds["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pod = template["spec"]
    assert pod["hostPID"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    (port,) = container["ports"]
    assert port["containerPort"] == DEFAULT_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULT_PORT)
    # The container's command line is one our own parser accepts.
    args = container["args"]
    assert args[:2] == ["undertaker", "exporter"]
    parsed = build_parser({"exporter": "exporter"}, "exporter").parse_args(args[1:])
    assert parsed.listen == ("0.0.0.0", DEFAULT_PORT)  # noqa: S104
    service = docs["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == DEFAULT_PORT
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say (ExecStart pointed at this install)."""
    unit = (DEPLOY / "systemd" / "undertaker-exporter.service").read_text()
    console = Path(sys.executable).parent / "undertaker"
    assert "ExecStart=/usr/local/bin/undertaker exporter --listen 127.0.0.1:" in unit
    (tmp_path / "undertaker-exporter.service").write_text(
        unit.replace("/usr/local/bin/undertaker", str(console))
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "undertaker-exporter.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")


def _image() -> tuple[list[str], list[str]]:
    """ENTRYPOINT and CMD of the Dockerfile (exec form)."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)[1])  # type: ignore[index]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)[1])  # type: ignore[index]
    return entry, cmd


# Runs as the image's command under its entrypoint: checks who PID 1 is, then
# leaves an orphan that exits, which only a reaping PID 1 clears.
_CHECK_INIT = r"""
import os, sys, time
with open("/proc/1/cmdline", "rb") as f:
    init = f.read().split(b"\0")
assert os.getppid() == 1, os.getppid()
if os.fork() == 0:
    if os.fork() == 0:
        time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.6)
states = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        with open(f"/proc/{pid}/stat", "rb") as f:
            states.append(f.read().rsplit(b")", 1)[1].split()[0])
print(b" ".join(init[1:4]).decode(), states.count(b"Z"))
"""


@needs_namespace
def test_image_entrypoint_is_pid_1_and_reaps() -> None:
    """Under unshare, the entrypoint `undertaker run --` is PID 1 and reaps the orphan."""
    entry, cmd = _image()
    assert entry == ["undertaker", "run", "--"]
    assert cmd[:2] == ["undertaker", "exporter"]
    bindir = str(Path(sys.executable).parent)
    unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "env"]
    env_path = f"PATH={bindir}:/usr/bin:/bin"
    done = subprocess.run(
        [*unshare, env_path, *entry, sys.executable, "-c", _CHECK_INIT],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    console, *init_args, zombies = done.stdout.split()
    assert console.endswith("/undertaker")  # run by its interpreter: argv[0] is python
    assert init_args == ["run", "--"]
    assert zombies == "0"
    # The image's own command runs under it too (one scrape, then exit 0, as a shell would).
    done = subprocess.run(
        [*unshare, env_path, *entry, *cmd, "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\nundertaker_zombies 0.0\n" in done.stdout
