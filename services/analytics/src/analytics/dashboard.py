"""The dashboard: one server-rendered HTML page, no script at all.

The key figures come from the summary report and the charts are inlined as `data:` PNGs, so
the page needs one authenticated request (the bearer token of its caller, as every route)
and nothing else: no second request for an image that would need its own credentials, no
token in a URL. Its Content-Security-Policy allows no script, no connection and no image but
the inlined ones; the only style is the page's own, allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, select_autoescape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
p.filters { color: #52606d; margin: 0 0 1rem; }
dl.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr));
  gap: .75rem; margin: 0 0 1.5rem; }
dl.figures div { border: 1px solid #d9e2ec; border-radius: .4rem; padding: .6rem .8rem; }
dt { font-size: .8rem; color: #52606d; }
dd { margin: .2rem 0 0; font-size: 1.3rem; font-weight: 600; }
section.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(26rem, 1fr));
  gap: 1rem; }
figure { margin: 0; } img { max-width: 100%; height: auto; }
""".strip()
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; img-src data:; style-src 'sha256-{STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Amana analytics</title>
<style>{{ style|safe }}</style>
</head>
<body>
<h1>Amana analytics</h1>
<p class="filters" id="filters">
{%- for name, value in filters.items() %}{{ name }}: {{ value }}
{%- if not loop.last %} · {% endif %}{% else %}All programmes, cycles and locations
{%- endfor %}</p>
<dl class="figures">
{% for f in figures %}<div><dt>{{ f.label }}</dt>
<dd id="{{ f.name }}" data-value="{{ f.raw }}">{{ f.text }}</dd></div>
{% endfor %}</dl>
<section class="charts">
{% for chart in charts %}<figure><img id="chart-{{ chart.name }}" alt="{{ chart.title }}"
 width="800" height="420" src="data:image/png;base64,{{ chart.data }}"></figure>
{% endfor %}</section>
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=select_autoescape(default=True), auto_reload=False)
_PAGE = _ENVIRONMENT.from_string(TEMPLATE)

FIGURES: tuple[tuple[str, str, str], ...] = (
    ("households", "Households enrolled", "count"),
    ("members", "Members", "count"),
    ("eligible", "Eligible", "count"),
    ("on_payroll", "On payroll", "count"),
    ("settled", "Paid", "count"),
    ("failed", "Failed", "count"),
    ("expired", "Expired", "count"),
    ("success_rate", "Success rate", "share"),
    ("median_hours", "Median hours to settlement", "number"),
    ("p90_hours", "p90 hours to settlement", "number"),
    ("share_within_window", "Paid within the window", "share"),
    ("open_duplicate_flags", "Open duplicate flags", "count"),
)
CHART_TITLES = {
    "coverage": "Coverage by location",
    "outcomes": "Payment outcomes by provider",
    "non_payment_reasons": "Reasons for non-payment",
    "timeliness": "Timeliness over cycles",
}


def _text(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "share":
        return f"{value * 100:.1f}%"
    if kind == "count":
        return f"{int(value):,}"
    return f"{value:,.2f}"


def figures(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    shown = [
        {
            "name": name,
            "label": label,
            "raw": "" if summary.get(name) is None else summary[name],
            "text": _text(summary.get(name), kind),
        }
        for name, label, kind in FIGURES
    ]
    for name in sorted(summary):
        if name.startswith("paid_amount_minor_"):
            currency = name.removeprefix("paid_amount_minor_")
            shown.append(
                {
                    "name": name,
                    "label": f"Paid ({currency}, minor units)",
                    "raw": summary[name],
                    "text": _text(summary[name], "count"),
                }
            )
    return shown


def page(
    filters: Mapping[str, Any], summary: Mapping[str, Any], charts: Mapping[str, bytes]
) -> str:
    return _PAGE.render(
        style=STYLE,
        filters=filters,
        figures=figures(summary),
        charts=[
            {"name": name, "title": CHART_TITLES[name], "data": base64.b64encode(png).decode()}
            for name, png in charts.items()
        ],
    )
