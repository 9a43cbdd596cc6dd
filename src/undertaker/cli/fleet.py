"""``undertaker fleet --prometheus URL``: zombies across every exporter Prometheus scrapes.

Asks Prometheus' HTTP API (``/api/v1/query``, standard library only) for the
exporters' latest values and prints zombies per host, per container and per
parent, worst first. Hosts are told apart by a label, ``instance`` unless
``--host-label`` names another (``node`` in Kubernetes, say).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from undertaker.cli._common import EXIT_ERROR, EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK
from undertaker.cli._style import table

if TYPE_CHECKING:
    import argparse

FLEET_JSON_VERSION = 1
_TIMEOUT = 10.0  # seconds per query


class QueryFailed(Exception):
    """Prometheus could not be asked, or refused the query."""


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``fleet``."""
    sub = subs.add_parser(
        "fleet",
        help="zombies per host, container and parent across a fleet, from Prometheus",
        description="Query a Prometheus server that scrapes undertaker exporters and "
        "print zombies per host, per container and per parent command across the "
        "fleet, worst first.",
        epilog="Exit status: 0 no zombies anywhere, 1 zombies found, 2 error "
        "(Prometheus unreachable or query refused, bad URL), 3 no zombies seen but an "
        "exporter is down or sees only part of its host. JSON schema: docs/json.md.",
    )
    sub.add_argument(
        "--prometheus", required=True, metavar="URL", help="Prometheus base URL (http://host:9090)"
    )
    sub.add_argument(
        "--host-label",
        default="instance",
        metavar="LABEL",
        help="the label that names a host (default instance)",
    )
    sub.add_argument("--json", action="store_true", help="print one JSON document")


def query(base: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; return its vector of ``{"metric": {...}, "value": [t, "v"]}``."""
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:  # noqa: S310  (http(s) checked)
            doc = json.load(response)
    except urllib.error.HTTPError as err:
        try:
            detail = json.load(err).get("error", err.reason)
        except ValueError:
            detail = err.reason
        raise QueryFailed(f"Prometheus refused {promql!r}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise QueryFailed(f"cannot query Prometheus at {base}: {reason}") from None
    except http.client.HTTPException as err:  # not HTTP at all: an SSH port, say
        raise QueryFailed(f"{base} does not speak HTTP ({type(err).__name__})") from None
    except ValueError:
        raise QueryFailed(f"{base} answered {promql!r} with no JSON: is it Prometheus?") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error", doc) if isinstance(doc, dict) else doc
        raise QueryFailed(f"Prometheus answered {promql!r} with {str(error)[:200]}")
    data = doc.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "vector"
        or not isinstance(result, list)
        or not all(_is_sample(item) for item in result)
    ):
        raise QueryFailed(
            f"{base} answered {promql!r} with no instant vector of numbers: is it Prometheus?"
        )
    return result


def _is_sample(item: object) -> bool:
    """Whether *item* has the shape of an instant-vector sample with a finite value."""
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        return False
    value = item.get("value")
    if not isinstance(value, list) or len(value) != 2:  # [time, "value"]
        return False
    try:
        return math.isfinite(float(value[1]))
    except (TypeError, ValueError):
        return False


def _rows(base: str, promql: str, labels: list[str]) -> list[dict[str, Any]]:
    rows = []
    for item in query(base, promql):
        row: dict[str, Any] = {label: item["metric"].get(label, "") for label in labels}
        row["zombies"] = int(float(item["value"][1]))
        rows.append(row)
    rows.sort(key=lambda r: (-r["zombies"], *(r[label] for label in labels)))
    return rows


def gather(base: str, host: str) -> dict[str, Any]:
    """Query the fleet's zombies by host, container and parent, worst first."""
    hosts = _rows(base, f"sum by ({host}) (undertaker_zombies)", [host])
    extra = {
        "leaders": f"sum by ({host}) (undertaker_zombie_leaders)",
        "oldest_seconds": f"max by ({host}) (undertaker_oldest_zombie_age_seconds)",
        "complete": f"min by ({host}) (undertaker_view_complete)",
    }
    for key, promql in extra.items():
        found = {
            item["metric"].get(host, ""): float(item["value"][1]) for item in query(base, promql)
        }
        for row in hosts:
            value = found.get(row[host])
            row[key] = None if value is None else (value if key == "oldest_seconds" else int(value))
    containers = _rows(
        base,
        f"sum by ({host}, container_id, runtime, pod_uid) (undertaker_zombies_by_container) > 0",
        [host, "container_id", "runtime", "pod_uid"],
    )
    for row in containers:  # the JSON keeps its names (docs/json.md)
        row["container"], row["pod"] = row.pop("container_id"), row.pop("pod_uid")
    parents = _rows(
        base, f"sum by ({host}, parent) (undertaker_zombies_by_parent) > 0", [host, "parent"]
    )
    for row in [*hosts, *containers, *parents]:
        row["host"] = row.pop(host)
    # Exporters Prometheus failed to scrape last time: their series went stale, so
    # they are missing above. Known as exporters by a build_info of the last day.
    down = query(
        base,
        f"count by ({host}) (up == 0 and on (job, instance) "
        "last_over_time(undertaker_build_info[1d]))",
    )
    return {
        "version": FLEET_JSON_VERSION,
        "hosts": hosts,
        "containers": containers,
        "parents": parents,
        "zombies": sum(row["zombies"] for row in hosts),
        "down": sorted(item["metric"].get(host, "") for item in down),
    }


def _text(doc: dict[str, Any]) -> list[str]:
    down = []
    if doc["down"]:
        hosts = ", ".join(doc["down"])
        down = [f"exporter down on {len(doc['down'])} hosts (zombies there unseen): {hosts}"]
    if not doc["hosts"]:
        return down or ["no undertaker exporter found in this Prometheus"]
    lines = [f"{doc['zombies']} zombies on {len(doc['hosts'])} hosts", *down, ""]
    rows = [["HOST", "ZOMBIES", "LEADERS", "OLDEST", "VIEW"]]
    for h in doc["hosts"]:
        oldest = "-" if h["oldest_seconds"] is None else f"{h['oldest_seconds']:.0f}s"
        view = "incomplete" if h["complete"] == 0 else "complete"
        rows.append([h["host"], str(h["zombies"]), str(h["leaders"]), oldest, view])
    lines += table(rows, right=frozenset({1, 2, 3}))
    if doc["containers"]:
        rows = [["HOST", "ZOMBIES", "CONTAINER", "RUNTIME", "POD"]]
        rows += [
            [c["host"], str(c["zombies"]), c["container"], c["runtime"] or "-", c["pod"] or "-"]
            for c in doc["containers"]
        ]
        lines += ["", *table(rows, right=frozenset({1}))]
    if doc["parents"]:
        rows = [["HOST", "ZOMBIES", "PARENT"]]
        rows += [[p["host"], str(p["zombies"]), p["parent"]] for p in doc["parents"]]
        lines += ["", *table(rows, right=frozenset({1}))]
    return lines


def run(args: argparse.Namespace) -> int:
    """Query and print; exit 1 when any host has zombies."""
    try:
        scheme = urllib.parse.urlsplit(args.prometheus).scheme
    except ValueError:  # an unclosed IPv6 bracket, say
        scheme = ""
    if scheme not in ("http", "https"):
        print(
            "undertaker fleet: error: --prometheus must be an http(s) URL, "
            f"not {args.prometheus!r}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", args.host_label):
        print(
            f"undertaker fleet: error: --host-label: not a Prometheus label name: "
            f"{args.host_label!r}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        doc = gather(args.prometheus, args.host_label)
    except QueryFailed as err:
        print(f"undertaker fleet: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        for line in _text(doc):
            print(line)
    if doc["zombies"]:
        return EXIT_FOUND
    incomplete = doc["down"] or any(h["complete"] == 0 for h in doc["hosts"])
    return EXIT_INCOMPLETE if incomplete else EXIT_OK  # as ps: none seen, but not all seen
