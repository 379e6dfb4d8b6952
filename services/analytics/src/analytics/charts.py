"""PNG charts of the reports, drawn server-side with matplotlib's Agg backend.

Figures are built with the object API (no pyplot, no global state), so charts may be drawn
in worker threads; `render` runs one at a time per process to bound memory and CPU.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_BARS = 25
COLOURS = {
    "enrolled": "#9aa5b1",
    "eligible": "#5b8def",
    "on_payroll": "#f0a33a",
    "paid": "#2e9d5b",
    "settled": "#2e9d5b",
    "failed": "#d64545",
    "expired": "#8a5cd1",
    "reversed": "#444444",
}
CHARTS = ("coverage", "outcomes", "non_payment_reasons", "timeliness")
_DRAWING = threading.Lock()

Rows = Sequence[Mapping[str, Any]]


def _figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(8, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=12, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _empty(axes: Any, message: str = "No data for these filters") -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _grouped_bars(axes: Any, labels: list[str], series: Mapping[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [x + index * width - 0.4 + width / 2 for x in range(len(labels))]
        axes.bar(positions, values, width, label=name.replace("_", " "), color=COLOURS.get(name))
    axes.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0, ha="right")
    axes.legend(frameon=False, fontsize=8)


def coverage_chart(rows: Rows) -> bytes:
    """Enrolled, eligible, on payroll and paid per location (the largest locations)."""
    figure, axes = _figure("Coverage by location")
    by_location: dict[str, dict[str, int]] = {}
    for row in rows:
        totals = by_location.setdefault(str(row["location"]), dict.fromkeys(_COVERAGE, 0))
        for name in _COVERAGE:
            totals[name] += int(row.get(name) or 0)
    if not by_location:
        _empty(axes)
        return _png(figure)
    largest = sorted(by_location, key=lambda loc: (-by_location[loc]["enrolled"], loc))[:MAX_BARS]
    shown = sorted(largest)
    _grouped_bars(
        axes, shown, {name: [by_location[loc][name] for loc in shown] for name in _COVERAGE}
    )
    axes.set_ylabel("households")
    return _png(figure)


_COVERAGE = ("enrolled", "eligible", "on_payroll", "paid")


def outcomes_chart(rows: Rows) -> bytes:
    """Payments settled, failed, expired and reversed per provider, stacked."""
    figure, axes = _figure("Payment outcomes by provider")
    by_provider: dict[str, dict[str, int]] = {}
    for row in rows:
        name = str(row.get("provider") or row.get("provider_id") or "all")
        totals = by_provider.setdefault(name, dict.fromkeys(_OUTCOMES, 0))
        for outcome in _OUTCOMES:
            totals[outcome] += int(row.get(outcome) or 0)
    if not by_provider:
        _empty(axes)
        return _png(figure)
    names = sorted(by_provider)[:MAX_BARS]
    bottom = [0] * len(names)
    for outcome in _OUTCOMES:
        values = [by_provider[n][outcome] for n in names]
        axes.bar(names, values, bottom=bottom, label=outcome, color=COLOURS[outcome])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_ylabel("payments")
    axes.legend(frameon=False, fontsize=8)
    return _png(figure)


_OUTCOMES = ("settled", "failed", "expired", "reversed")


def reasons_chart(rows: Rows) -> bytes:
    """Payments not made, by outcome and reason, most frequent first."""
    figure, axes = _figure("Reasons for non-payment")
    counts: dict[str, int] = {}
    for row in rows:
        label = f"{row['outcome']}: {row['reason_code']}"
        counts[label] = counts.get(label, 0) + int(row["payments"])
    if not counts:
        _empty(axes, "Every payment was made")
        return _png(figure)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_BARS]
    labels = [label for label, _ in reversed(ordered)]
    values = [value for _, value in reversed(ordered)]
    colours = [COLOURS[label.split(":")[0]] for label in labels]
    axes.barh(labels, values, color=colours)
    axes.set_xlabel("payments")
    return _png(figure)


def timeliness_chart(rows: Rows) -> bytes:
    """Median and p90 hours from approval to settlement, and the share paid within the
    payment window, cycle by cycle."""
    figure, axes = _figure("Timeliness over cycles")
    ordered = sorted(rows, key=lambda r: (str(r.get("period_start")), str(r.get("programme"))))
    if not ordered:
        _empty(axes)
        return _png(figure)
    labels = [
        f"{row.get('programme') or ''} {row.get('period_start') or ''}".strip() for row in ordered
    ]
    x = list(range(len(labels)))
    axes.plot(
        x,
        [r["median_hours"] or 0 for r in ordered],
        marker="o",
        label="median hours",
        color="#5b8def",
    )
    axes.plot(
        x, [r["p90_hours"] or 0 for r in ordered], marker="o", label="p90 hours", color="#f0a33a"
    )
    axes.set_ylim(bottom=0)
    axes.set_ylabel("hours from approval to settlement")
    axes.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right")
    share = axes.twinx()
    share.bar(
        x,
        [r["share_within_window"] or 0 for r in ordered],
        alpha=0.2,
        color="#2e9d5b",
        label="paid within window",
    )
    share.set_ylim(0, 1)
    share.set_ylabel("share paid within the window")
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    return _png(figure)


DRAWERS: dict[str, Callable[[Rows], bytes]] = {
    "coverage": coverage_chart,
    "outcomes": outcomes_chart,
    "non_payment_reasons": reasons_chart,
    "timeliness": timeliness_chart,
}


def _draw(chart: str, rows: Rows) -> bytes:
    with _DRAWING:
        return DRAWERS[chart](rows)


async def render(chart: str, rows: Rows) -> bytes:
    """Draws off the event loop, one chart at a time per process."""
    return await asyncio.to_thread(_draw, chart, list(rows))
