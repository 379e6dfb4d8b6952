"""Tracing under test: the process's tracing installed for a block, its spans kept in memory
as they would be exported (scrubbed by the same filter), and ways to walk a trace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from amana_common.tracing import install_tracing, uninstall_tracing

TEST_SERVICE_NAME = "amana-test"


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the block (apps, engines and clients made in it are traced), each span
    recorded as it ends; off again after."""
    exporter = InMemorySpanExporter()
    install_tracing(exporter, service_name=TEST_SERVICE_NAME, batch=False)
    try:
        yield exporter
    finally:
        uninstall_tracing()


@dataclass(frozen=True)
class Trace:
    """The finished spans of one trace."""

    trace_id: int
    spans: tuple[ReadableSpan, ...]

    @classmethod
    def of(cls, exporter: InMemorySpanExporter, trace_id: int | str) -> Trace:
        wanted = int(trace_id, 16) if isinstance(trace_id, str) else trace_id
        spans = tuple(s for s in exporter.get_finished_spans() if _trace_of(s) == wanted)
        return cls(wanted, spans)

    def named(self, name: str, kind: SpanKind | None = None) -> ReadableSpan:
        """The one span called `name` (of `kind`); fails when there is none or several."""
        found = [s for s in self.spans if s.name == name and kind in (None, s.kind)]
        assert len(found) == 1, f"{len(found)} spans {name!r} in {self.names()}"
        return found[0]

    def children(self, parent: ReadableSpan, kind: SpanKind | None = None) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s
            for s in self.spans
            if s.parent is not None
            and s.parent.span_id == parent.context.span_id
            and kind in (None, s.kind)
        ]

    def statements(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans of the statements run directly under `parent` (not its connects)."""
        return [s for s in self.children(parent, SpanKind.CLIENT) if statement(s)]

    def names(self) -> list[str]:
        return sorted(s.name for s in self.spans)


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        child.parent is not None
        and parent.context is not None
        and child.parent.span_id == parent.context.span_id
        and child.parent.trace_id == parent.context.trace_id
    )


def statement(span: ReadableSpan) -> str:
    return str((span.attributes or {}).get("db.statement", ""))


def _trace_of(span: ReadableSpan) -> int | None:
    return span.context.trace_id if span.context is not None else None
