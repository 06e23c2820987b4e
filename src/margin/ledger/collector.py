"""The ledger writer's health as Prometheus metrics, read at scrape time (nothing on the request path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.ledger.writer import LedgerWriter


class LedgerCollector:
    def __init__(self, writer: LedgerWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        w = self.writer
        yield GaugeMetricFamily("margin_ledger_queue_depth", "Ledger rows waiting to be written", value=w.queue_depth)
        yield GaugeMetricFamily(
            "margin_ledger_store_available", "1 while the ledger database accepts writes", value=int(w.store_available)
        )
        yield CounterMetricFamily("margin_ledger_written_rows", "Rows written to the store", value=w.written_rows)
        yield CounterMetricFamily(
            "margin_ledger_spilled_rows",
            "Rows spilled to the local file while the store was down",
            value=w.spilled_rows,
        )
        yield CounterMetricFamily(
            "margin_ledger_replayed_rows", "Spilled rows replayed into the store", value=w.replayed_rows
        )
        yield CounterMetricFamily("margin_ledger_lost_rows", "Rows neither store nor disk took", value=w.lost_rows)
        journal = w.journal
        if journal is not None and journal.is_open:
            yield GaugeMetricFamily(
                "margin_journal_open_requests",
                "Requests the replica journal still holds (in flight, or unsettled)",
                value=journal.open_requests(),
            )
            yield CounterMetricFamily(
                "margin_journal_fsyncs", "Group fsyncs of the replica journal", value=journal.fsyncs
            )
