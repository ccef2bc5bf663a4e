"""Render the planned dashboards offline: one self-contained HTML page per dashboard plus an index.

The pages are built from the plan's `azure-native:portal:Dashboard` inputs (exactly what would be sent to
Azure), so what a reviewer sees is what will be deployed: each tile at its grid position and size, its title,
chart type, time range, the resources it is bound to (the Logs part's scope and every ARM id in its query)
and the KQL itself. Output is XHTML-clean (every element closed, text escaped), so it parses as XML too.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stamps.offline.plan import Plan

DASHBOARD_TYPE = "azure-native:portal:Dashboard"
ROW_HEIGHT_PX = 92
_ARM_ID = re.compile(r"/subscriptions/[0-9a-fA-F-]{36}/resourcegroups/[^\"'\s,\]]+", re.IGNORECASE)


@dataclass
class PlannedTile:
    title: str
    subtitle: str
    x: int
    y: int
    width: int
    height: int
    kind: str
    chart: str
    time_range: str
    query: str
    markdown: str
    bound: list[str] = field(default_factory=list)


@dataclass
class PlannedDashboard:
    resource: str
    name: str
    title: str
    resource_group: str
    location: str
    tiles: list[PlannedTile]

    @property
    def file_name(self) -> str:
        return f"{self.name}.html"


def _inputs(metadata: dict[str, Any]) -> dict[str, Any]:
    return {str(i.get("name")): i.get("value") for i in metadata.get("inputs") or [] if isinstance(i, dict)}


def _tile(part: dict[str, Any]) -> PlannedTile:
    pos = part.get("position") or {}
    meta = part.get("metadata") or {}
    ins = _inputs(meta)
    markdown = ""
    if str(meta.get("type", "")).endswith("/MarkdownPart"):
        md = ((meta.get("settings") or {}).get("content") or {}).get("settings") or {}
        markdown = str(md.get("content", ""))
        title, subtitle, kind, chart = str(md.get("title", "")), str(md.get("subtitle", "")), "markdown", "Markdown"
    else:
        title, subtitle, kind = str(ins.get("PartTitle", "")), str(ins.get("PartSubTitle", "")), "logs"
        chart = str(ins.get("SpecificChart") or ("Grid" if ins.get("ControlType") == "AnalyticsGrid" else
                                                 ins.get("ControlType", "")))
    query = str(ins.get("Query", ""))
    scope_input = ins.get("Scope")
    scope = list(scope_input.get("resourceIds") or []) if isinstance(scope_input, dict) else []
    bound: list[str] = []
    for rid in [*scope, *_ARM_ID.findall(query), *_ARM_ID.findall(markdown)]:
        if rid.lower() not in {b.lower() for b in bound}:
            bound.append(rid)
    return PlannedTile(
        title=title, subtitle=subtitle, x=int(pos.get("x", 0)), y=int(pos.get("y", 0)),
        width=int(pos.get("colSpan", 1)), height=int(pos.get("rowSpan", 1)), kind=kind, chart=chart,
        time_range=str(ins.get("TimeRange", "")), query=query, markdown=markdown, bound=bound,
    )


def planned_dashboards(plan: Plan) -> list[PlannedDashboard]:
    """Every dashboard of the plan with its tiles."""
    out: list[tuple[bool, str, PlannedDashboard]] = []
    for r in plan.by_type(DASHBOARD_TYPE):
        i = r["inputs"]
        lenses = (i.get("properties") or {}).get("lenses") or []
        parts = [p for lens in sorted(lenses, key=lambda x: x.get("order", 0)) for p in lens.get("parts") or []]
        name = str(i.get("dashboardName") or r["name"])
        tags = i.get("tags") or {}
        out.append((bool(tags.get("cell")), name, PlannedDashboard(
            resource=r["name"], name=name, title=str(tags.get("hidden-title", name)),
            resource_group=str(i.get("resourceGroupName", "")), location=str(i.get("location", "")),
            tiles=[_tile(p) for p in parts],
        )))
    # Registration order depends on when ids resolve: list the global dashboard first, then CELLs by name.
    return [d for _, _, d in sorted(out, key=lambda x: (x[0], x[1]))]


# --- HTML ------------------------------------------------------------------------------------------------
_CSS = """
body { font-family: "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; background: #f3f4f6; color: #1f2937; }
header { background: #0f172a; color: #f8fafc; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header p { margin: 4px 0 0; font-size: 12px; color: #cbd5e1; }
header a { color: #93c5fd; }
main { padding: 16px 24px; }
.grid { display: grid; grid-template-columns: repeat(12, minmax(0, 1fr)); grid-auto-rows: %(row)dpx; gap: 8px;
        min-width: 1100px; }
.tile { background: #ffffff; border: 1px solid #d1d5db; border-radius: 4px; padding: 8px 10px; overflow: hidden;
        display: flex; flex-direction: column; box-shadow: 0 1px 2px rgba(0,0,0,0.06); }
.tile h2 { font-size: 14px; margin: 0; }
.tile .sub { font-size: 11px; color: #6b7280; margin: 2px 0 4px; }
.meta { font-size: 11px; color: #374151; margin-bottom: 4px; }
.badge { display: inline-block; background: #e0e7ff; color: #3730a3; border-radius: 3px; padding: 0 5px;
         margin-right: 4px; font-size: 10px; font-weight: 600; }
.pos { background: #f1f5f9; color: #475569; }
.bound { font-size: 11px; margin: 0 0 4px; padding-left: 16px; }
.bound li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.bound code { color: #0f766e; }
pre { flex: 1; margin: 0; background: #0b1020; color: #e2e8f0; font-size: 11px; line-height: 1.35; padding: 6px 8px;
      overflow: auto; border-radius: 3px; white-space: pre-wrap; overflow-wrap: anywhere; }
.md { font-size: 13px; overflow: auto; }
.md h2 { font-size: 16px; margin: 0 0 4px; }
.md ul { margin: 4px 0; padding-left: 18px; }
.md p { margin: 2px 0; }
.md code { background: #f1f5f9; padding: 0 3px; }
table { border-collapse: collapse; background: #ffffff; }
td, th { border: 1px solid #d1d5db; padding: 6px 10px; font-size: 13px; text-align: left; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _inline_md(text: str) -> str:
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def markdown_html(text: str) -> str:
    """The small markdown subset the dashboards' banner tiles use: headings, bullets, bold, code."""
    out: list[str] = []
    in_list = False
    for line in text.splitlines():
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline_md(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            out.append(f"<h2>{_inline_md(line.lstrip('#').strip())}</h2>")
        elif line.strip():
            out.append(f"<p>{_inline_md(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def _short(rid: str) -> str:
    parts = rid.rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else rid


def _tile_html(t: PlannedTile) -> str:
    style = f"grid-column: {t.x + 1} / span {t.width}; grid-row: {t.y + 1} / span {t.height};"
    head = (f'<h2>{_e(t.title)}</h2>'
            + (f'<div class="sub">{_e(t.subtitle)}</div>' if t.subtitle else ""))
    meta = (f'<div class="meta"><span class="badge">{_e(t.chart)}</span>'
            + (f'<span class="badge">{_e(t.time_range)}</span>' if t.time_range else "")
            + f'<span class="badge pos">x {t.x} · y {t.y} · {t.width}×{t.height}</span></div>')
    bound = ""
    if t.bound:
        items = "".join(f'<li title="{_e(b)}"><code>{_e(_short(b))}</code></li>' for b in t.bound)
        bound = f'<ul class="bound">{items}</ul>'
    md = t.kind == "markdown"
    body = f'<div class="md">{markdown_html(t.markdown)}</div>' if md else f"<pre>{_e(t.query)}</pre>"
    return f'<section class="tile" style="{style}">{head}{meta}{bound}{body}</section>'


def _page(title: str, header: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS % {'row': ROW_HEIGHT_PX}}</style>\n</head>\n"
        f"<body>\n<header>{header}</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def dashboard_html(d: PlannedDashboard, plan: Plan) -> str:
    header = (f"<h1>{_e(d.title)}</h1><p>Azure dashboard <code>{_e(d.name)}</code> in "
              f"<code>{_e(d.resource_group)}</code> ({_e(d.location)}) · stack {_e(plan.project)}/{_e(plan.stack)}"
              ' · <a href="index.html">all dashboards</a></p>')
    tiles = "\n".join(_tile_html(t) for t in d.tiles)
    return _page(d.title, header, f'<div class="grid">\n{tiles}\n</div>')


def index_html(dashboards: list[PlannedDashboard], plan: Plan) -> str:
    rows = "\n".join(
        f'<tr><td><a href="{_e(d.file_name)}">{_e(d.title)}</a></td><td><code>{_e(d.name)}</code></td>'
        f"<td>{_e(d.resource_group)}</td><td>{len(d.tiles)}</td></tr>"
        for d in dashboards
    )
    table = ("<table><thead><tr><th>dashboard</th><th>name</th><th>resource group</th><th>tiles</th></tr></thead>"
             f"<tbody>\n{rows}\n</tbody></table>")
    header = f"<h1>Dashboards of {_e(plan.project)}/{_e(plan.stack)}</h1><p>{len(dashboards)} planned dashboards</p>"
    return _page(f"Dashboards of {plan.project}/{plan.stack}", header, table)


def write_dashboards(plan: Plan, out_dir: Path) -> list[Path]:
    """Write one page per dashboard plus index.html; returns the paths written (index first)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dashboards = planned_dashboards(plan)
    written = [out_dir / "index.html"]
    written[0].write_text(index_html(dashboards, plan), encoding="utf-8")
    for d in dashboards:
        path = out_dir / d.file_name
        path.write_text(dashboard_html(d, plan), encoding="utf-8")
        written.append(path)
    return written
