"""``undertaker exporter``: zombie metrics for Prometheus, a page, a health probe.

The only part of undertaker that imports ``prometheus_client`` (the
``undertaker[exporter]`` extra). Layers, each a small module:

* :mod:`._source`: where the process table comes from. A *table source* is a
  callable returning a :class:`~undertaker.proc.Snapshot`, with a ``name``
  exported as ``undertaker_table_source_info{source=...}``. The default,
  :class:`ScanSource`, scans ``/proc`` once per scrape; an event-driven table
  (the proc connector, ``--events``) plugs in here without touching the rest.
* :mod:`._reading`: one scrape's numbers from a snapshot (no
  ``prometheus_client``, no HTTP), with :mod:`._deaths` remembering each
  zombie's time of death from one scrape to the next.
* :mod:`._collector`: the custom collector that turns a reading into metric
  families, plus the scrape's own health (duration, errors, build info).
* :mod:`._page` and :mod:`._server`: the HTML page, ``/healthz`` and the
  read-only HTTP server.
"""

from undertaker.exporter._collector import ZombieCollector, make_registry
from undertaker.exporter._reading import Reading, read_table
from undertaker.exporter._server import serve
from undertaker.exporter._source import EventSource, ScanSource, TableSource

__all__ = [
    "EventSource",
    "Reading",
    "ScanSource",
    "TableSource",
    "ZombieCollector",
    "make_registry",
    "read_table",
    "serve",
]
