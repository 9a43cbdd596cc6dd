"""A real Prometheus scraping two exporters, each over its own PID namespace's zombies.

Prometheus (Debian's package, installed by .ci/run) runs on loopback with a
temporary configuration and storage. It applies new targets on a ~5 s cycle,
so the tests poll its HTTP API for the values instead of sleeping.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from exporter_helpers import NamespaceExporter, free_port, stop, wait_http
from helpers import REPO, cli, needs_namespace
from undertaker.testing import sleep_until

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    needs_namespace,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="needs Debian's prometheus (.ci/run installs it)"
    ),
]
DASHBOARD = REPO / "deploy" / "grafana" / "undertaker.json"


class Fleet(NamedTuple):
    url: str
    alpha: NamespaceExporter  # 3 zombies under zalpha, and a live zombie leader
    beta: NamespaceExporter  # 2 under zbeta, 2 under zgamma


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's vector."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310  (our loopback server)
        doc = json.load(response)
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def by_instance(url: str, promql: str) -> dict[str, float]:
    """``{instance: value}`` of a query."""
    return {r["metric"]["instance"]: float(r["value"][1]) for r in query(url, promql)}


@contextmanager
def prometheus(tmp: Path, targets: list[str], labels: str = "{}") -> Iterator[str]:
    """A Prometheus on loopback scraping *targets* every second, until its first samples."""
    assert PROMETHEUS is not None
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: undertaker\n"
        f"    static_configs: [{{targets: {targets!r}, labels: {labels}}}]\n"
    )
    port = free_port()
    with (tmp / "log").open("w") as log:
        server = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready")
        # Every target's first samples: ~5-6 s after start (the target-update cycle).
        count = len(targets)
        arrived = sleep_until(lambda: len(query(url, "undertaker_zombies")) == count, timeout=60)
        assert arrived, (tmp / "log").read_text()[-2000:]
        yield url
    finally:
        stop(server)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two exporters and a Prometheus scraping them every second, stopped whatever happens."""
    with (
        NamespaceExporter([("zalpha", 3)], leaders=1) as alpha,
        NamespaceExporter([("zbeta", 2), ("zgamma", 2)]) as beta,
        # The target labels a Kubernetes scrape job attaches (the exporter's own pod).
        prometheus(
            tmp_path_factory.mktemp("prometheus"),
            [alpha.address, beta.address],
            "{container: exporter, pod: undertaker-exporter-x7k2p}",
        ) as url,
    ):
        yield Fleet(url, alpha, beta)


def test_prometheus_stores_what_each_exporter_saw(fleet: Fleet) -> None:
    """Per host: zombies, the leader apart, zombies by parent, every state series."""
    alpha, beta = fleet.alpha.address, fleet.beta.address
    assert by_instance(fleet.url, "undertaker_zombies") == {alpha: 3, beta: 4}
    assert by_instance(fleet.url, "undertaker_zombie_leaders") == {alpha: 1, beta: 0}
    parents = {
        (r["metric"]["instance"], r["metric"]["parent"]): float(r["value"][1])
        for r in query(fleet.url, "undertaker_zombies_by_parent > 0")
    }
    assert parents == {(alpha, "zalpha"): 3, (beta, "zbeta"): 2, (beta, "zgamma"): 2}
    states = query(fleet.url, 'count by (instance) (undertaker_processes{state=~"[RSDTtXZPI]"})')
    assert sorted(float(r["value"][1]) for r in states) == [9, 9]
    assert by_instance(fleet.url, "up") == {alpha: 1, beta: 1}


def test_fleet_worst_first(fleet: Fleet) -> None:
    """``undertaker fleet`` lists hosts, containers and parents, most zombies first."""
    done = cli("fleet", "--prometheus", fleet.url, "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    alpha, beta = fleet.alpha.address, fleet.beta.address
    assert doc["zombies"] == 7
    assert [(h["host"], h["zombies"], h["leaders"]) for h in doc["hosts"]] == [
        (beta, 4, 0),
        (alpha, 3, 1),
    ]
    assert [(p["host"], p["parent"], p["zombies"]) for p in doc["parents"]] == [
        (alpha, "zalpha", 3),
        (beta, "zbeta", 2),
        (beta, "zgamma", 2),
    ]
    assert [(c["host"], c["container"], c["zombies"]) for c in doc["containers"]] == [
        (beta, "none", 4),
        (alpha, "none", 3),
    ]
    assert all(h["complete"] == 1 for h in doc["hosts"])
    text = cli("fleet", "--prometheus", fleet.url)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0] == "7 zombies on 2 hosts"
    assert lines[2].split() == ["HOST", "ZOMBIES", "LEADERS", "OLDEST", "VIEW"]
    assert lines[3].split()[:3] == [beta, "4", "0"]
    assert lines[4].split()[:3] == [alpha, "3", "1"]


def test_fleet_errors_are_one_line(fleet: Fleet) -> None:
    """An unreachable server, a bad URL or a missing option: one line, exit 2."""
    done = cli("fleet", "--prometheus", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert done.stderr.startswith("undertaker fleet: error: cannot query Prometheus at ")
    assert done.stderr.count("\n") == 1
    done = cli("fleet", "--prometheus", "ftp://example")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    done = cli("fleet", "--prometheus", fleet.url, "--host-label", "no such label")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert "not a Prometheus label name" in done.stderr


# PromQL words that are not metric names.
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    names = set(re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return names - _KEYWORDS


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, template variables included."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
            assert found, var["definition"]
            exprs.append(found.group(1))
    return exprs


def test_dashboard_is_importable() -> None:
    """The shape Grafana needs: unique panel ids, a grid position and queries for each."""
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert doc["uid"] == "undertaker-zombies"
    assert doc["title"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in doc["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], target["expr"]


def test_dashboard_queries_use_only_exported_metrics(fleet: Fleet) -> None:
    """Each query parses in Prometheus and reads only names a live scrape exports."""
    exported = {key.partition("{")[0] for key in fleet.alpha.metrics()}
    exprs = dashboard_queries()
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {names - exported} not exported"
        used |= names
        query(fleet.url, expr.replace("$instance", ".*"))  # asserts Prometheus accepts it
    assert {"undertaker_zombies", "undertaker_zombies_by_parent"} <= used


def test_metric_names_parser() -> None:
    """The checker itself finds metric names and nothing else (a negative control)."""
    expr = 'topk(10, sum by (instance, parent) (foo_total{a="b c"}[5m])) / on(x) bar > 0.8'
    assert metric_names(expr) == {"foo_total", "bar"}
    assert metric_names('count(up{job="x"} == 0) or vector(0)') == {"up"}


def test_fleet_names_exporters_that_went_down(tmp_path: Path) -> None:
    """An exporter that stops answering is listed as down, not silently left out: exit 3."""
    exporter = NamespaceExporter([("zdown", 1)])
    try:
        with prometheus(tmp_path, [exporter.address]) as url:
            exporter.close()  # its zombies' series go stale at the next failed scrape
            assert sleep_until(lambda: by_instance(url, "up") == {exporter.address: 0}, 30)
            done = cli("fleet", "--prometheus", url, "--json")
            assert done.returncode == 3, done.stderr
            doc = json.loads(done.stdout)
            assert (doc["hosts"], doc["zombies"], doc["down"]) == ([], 0, [exporter.address])
            text = cli("fleet", "--prometheus", url)
            assert text.returncode == 3
            assert text.stdout == (
                f"exporter down on 1 hosts (zombies there unseen): {exporter.address}\n"
            )
    finally:
        exporter.close()
