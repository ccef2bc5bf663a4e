"""Draw the environment's topology as SVG: regions, CELL instances and tenants.

One column per region (regions serving traffic highlighted, with the primaries they serve), one card per CELL
instance: primary or standby
(dashed), shared or dedicated (colour), load = tenants/capacity as a bar, tenants listed, isolated CELLs
hatched in red, CELLs with alerts off flagged. Dotted links join each primary to its standby. The drawing
comes from the resolved Environment (config + placement), so it needs no plan and matches what the program
deploys. Output is plain SVG 1.1 (valid XML); `topology_html` embeds it in a page with a CELL table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from stamps.config.loader import decode_stack_values, load_environment
from stamps.environment import CellInstance, Environment
from stamps.offline.engine import read_project, read_stack_config

COL_W, COL_GAP, MARGIN = 400, 60, 30
CARD_W, CARD_PAD = 356, 22
TOP = 150
MAX_TENANT_LINES = 4
COLORS = {
    "shared": ("#dbeafe", "#1d4ed8"),      # fill, stroke
    "dedicated": ("#ede9fe", "#6d28d9"),
    "active": ("#ecfdf5", "#059669"),
    "inactive": ("#f8fafc", "#94a3b8"),
    "isolated": "#dc2626",
}


def environment_from_stack(project_dir: Path, stack: str, config_file: Path | None = None) -> Environment:
    """The resolved Environment of a stack file, as the program would see it (secrets left out)."""
    project_dir = Path(project_dir)
    values, _ = read_stack_config(config_file or project_dir / f"Pulumi.{stack}.yaml")
    decoded = decode_stack_values(values)
    return load_environment(read_project(project_dir), stack, decoded)


@dataclass
class Card:
    inst: CellInstance
    x: float
    y: float
    h: float


def _tenant_lines(inst: CellInstance) -> list[str]:
    ids = [t.id for t in inst.tenants]
    lines, line = [], ""
    for tid in ids:
        cand = f"{line}, {tid}" if line else tid
        if len(cand) > 46 and line:
            lines.append(line)
            line = tid
        else:
            line = cand
    if line:
        lines.append(line)
    if len(lines) > MAX_TENANT_LINES:
        rest = sum(len(x.split(", ")) for x in lines[MAX_TENANT_LINES - 1:])
        lines = [*lines[:MAX_TENANT_LINES - 1], f"+{rest} more"]
    return lines or ["no tenants"]


def _card_height(inst: CellInstance) -> float:
    return 92 + 15 * len(_tenant_lines(inst))


def _load_color(ratio: float) -> str:
    return "#16a34a" if ratio < 0.7 else ("#d97706" if ratio < 0.9 else "#dc2626")


def _text(x: float, y: float, content: str, size: int = 12, weight: str = "normal", fill: str = "#1f2937",
          anchor: str = "start") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" fill="{fill}" '
            f'text-anchor="{anchor}">{escape(content)}</text>')


def _badge(x: float, y: float, label: str, fill: str, color: str = "#ffffff") -> tuple[str, float]:
    w = 7 * len(label) + 12
    svg = (f'<rect x="{x:.0f}" y="{y - 12:.0f}" width="{w}" height="16" rx="3" fill="{fill}"/>'
           + _text(x + w / 2, y, label, 10, "bold", color, "middle"))
    return svg, w


def _card(c: Card) -> str:
    inst = c.inst
    fill, stroke = COLORS[inst.model]
    dash = ' stroke-dasharray="6 4"' if inst.role == "standby" else ""
    out = [f'<g class="cell" id={quoteattr("cell-" + inst.key)}>']
    out.append(f'<rect x="{c.x:.0f}" y="{c.y:.0f}" width="{CARD_W}" height="{c.h:.0f}" rx="6" fill="{fill}" '
               f'stroke="{stroke}" stroke-width="1.5"{dash}/>')
    if inst.isolated:
        out.append(f'<rect x="{c.x:.0f}" y="{c.y:.0f}" width="{CARD_W}" height="{c.h:.0f}" rx="6" '
                   f'fill="url(#isolated)" stroke="{COLORS["isolated"]}" stroke-width="3"/>')
    out.append(_text(c.x + 12, c.y + 22, inst.name, 15, "bold"))
    bx = c.x + CARD_W - 12
    badges = [("PRIMARY", "#0f172a") if inst.role == "primary" else ("STANDBY", "#64748b")]
    if inst.isolated:
        badges.append(("ISOLATED", str(COLORS["isolated"])))
    elif not inst.alerts_enabled:
        badges.append(("ALERTS OFF", "#b45309"))
    for label, color in badges:
        w = 7 * len(label) + 12
        bx -= w
        svg, _ = _badge(bx, c.y + 22, label, color)
        out.append(svg)
        bx -= 6
    cap = inst.cell.capacity
    n = len(inst.tenants)
    ratio = n / cap if cap else 1.0
    out.append(_text(c.x + 12, c.y + 42, f"{inst.model} · {inst.key} · {n}/{cap} tenant{'s' if cap != 1 else ''}",
                     12, fill="#334155"))
    bar_w = CARD_W - 24
    out.append(f'<rect x="{c.x + 12:.0f}" y="{c.y + 52:.0f}" width="{bar_w}" height="10" rx="3" fill="#e2e8f0"/>')
    # A dedicated CELL is full by design: its bar takes the tenancy colour, not a warning colour.
    bar = stroke if inst.model == "dedicated" else _load_color(ratio)
    out.append(f'<rect x="{c.x + 12:.0f}" y="{c.y + 52:.0f}" width="{bar_w * min(ratio, 1.0):.0f}" height="10" '
               f'rx="3" fill="{bar}"><title>load {ratio:.0%}</title></rect>')
    # An isolated CELL runs no replica (the app scales to zero), whatever its configured range.
    replicas = "0 (isolated)" if inst.isolated else f"{inst.replicas.min}-{inst.replicas.max}"
    out.append(_text(c.x + 12, c.y + 78, f"load {ratio:.0%} · replicas {replicas}", 11, fill="#475569"))
    for i, line in enumerate(_tenant_lines(inst)):
        out.append(_text(c.x + 12, c.y + 96 + 15 * i, line, 11, fill="#1e293b" if inst.tenants else "#94a3b8"))
    out.append("</g>")
    return "\n".join(out)


def topology_svg(env: Environment) -> str:
    regions = env.deployed_regions
    cards: dict[tuple[str, str], Card] = {}
    col_h: dict[str, float] = {}
    for i, region in enumerate(regions):
        x = MARGIN + i * (COL_W + COL_GAP) + (COL_W - CARD_W) / 2
        y: float = TOP + 56
        for inst in env.instances_in(region):
            h = _card_height(inst)
            cards[(inst.name, inst.role)] = Card(inst, x, y, h)
            y += h + CARD_PAD
        col_h[region] = max(y - TOP, 120)
    width = MARGIN * 2 + len(regions) * COL_W + (len(regions) - 1) * COL_GAP
    legend_y = TOP + max(col_h.values()) + 50
    height = legend_y + 70

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Segoe UI, Roboto, Helvetica, Arial, sans-serif">',
        f"<title>{escape(f'Stamps topology of {env.project}/{env.stack}')}</title>",
        '<defs><pattern id="isolated" width="10" height="10" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="4" height="10" fill="#dc2626" fill-opacity="0.18"/></pattern>'
        '<marker id="arrow" markerWidth="10" markerHeight="10" refX="8" refY="5" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#059669"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        _text(MARGIN, 34, f"Stamps topology · {env.project}/{env.stack} ({env.config.environment})", 20, "bold"),
        _text(MARGIN, 56, f"{len(env.instances)} CELL instances · {len(env.config.tenants)} tenants · serving: "
                          + ", ".join(f"{p} → {env.serving_region(p)}" + (" (failed over)" if env.failed_over(p)
                                                                          else "") for p in env.primary_regions),
              13, fill="#475569"),
    ]
    # The request path: every tenant enters at the public host, passes API Management, then its CELL's
    # primary region's Traffic Manager profile picks that region's gateway or its DR region's.
    gx, gw = MARGIN, width - 2 * MARGIN
    out.append(f'<rect x="{gx}" y="72" width="{gw:.0f}" height="36" rx="6" fill="#0f172a"/>')
    out.append(_text(gx + gw / 2, 95, f"{env.config.tls.host_name} → Front Door → API Management (tenant, quota, "
                                      "X-Tenant-ID) → Traffic Manager per primary → regional App Gateway WAF → CELL",
                     13, "bold", "#f8fafc", "middle"))
    serves = {r: [p for p in env.primary_regions if env.serving_region(p) == r] for r in regions}
    for i, region in enumerate(regions):
        x = MARGIN + i * (COL_W + COL_GAP)
        active = bool(serves[region])
        fill, stroke = COLORS["active" if active else "inactive"]
        role = env.regions[region].role
        out.append(f'<g class="region" id={quoteattr("region-" + region)}>')
        out.append(f'<rect x="{x}" y="{TOP}" width="{COL_W}" height="{col_h[region]:.0f}" rx="8" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="{3 if active else 1.5}"/>')
        out.append(_text(x + 16, TOP + 30, region, 17, "bold"))
        label = "primary region" if role == "primary" else "DR region"
        out.append(_text(x + 16 + 10 * len(region) + 8, TOP + 30, label, 12, fill="#475569"))
        if active:
            label = "SERVING" if serves[region] == [region] else "SERVING " + "+".join(serves[region]).upper()
            svg, _ = _badge(x + COL_W - 16 - 7 * len(label) - 12, TOP + 30, label, "#059669")
            out.append(svg)
            out.append(f'<line x1="{x + COL_W / 2:.0f}" y1="108" x2="{x + COL_W / 2:.0f}" y2="{TOP - 4}" '
                       'stroke="#059669" stroke-width="3" marker-end="url(#arrow)"/>')
        out.append("</g>")
    # DR links: primary → standby.
    for (name, card_role), c in cards.items():
        standby = cards.get((name, "standby"))
        if card_role != "primary" or standby is None:
            continue
        left, right = (c, standby) if c.x < standby.x else (standby, c)
        x1, y1 = left.x + CARD_W, left.y + 30
        x2, y2 = right.x, right.y + 30
        mid = (x1 + x2) / 2
        out.append(f'<path d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
                   'fill="none" stroke="#64748b" stroke-width="1.5" stroke-dasharray="2 4">'
                   f"<title>{escape(f'{name}: standby in {standby.inst.region} (geo-replica)')}</title></path>")
    out += [_card(c) for c in cards.values()]
    out.append(_legend(MARGIN, legend_y))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(x: float, y: float) -> str:
    items = [
        (f'<rect x="{x:.0f}" y="{y - 11:.0f}" width="18" height="14" rx="2" fill="{COLORS["shared"][0]}" '
         f'stroke="{COLORS["shared"][1]}"/>', "shared CELL"),
        (f'<rect x="{x:.0f}" y="{y - 11:.0f}" width="18" height="14" rx="2" fill="{COLORS["dedicated"][0]}" '
         f'stroke="{COLORS["dedicated"][1]}"/>', "dedicated CELL"),
        (f'<rect x="{x:.0f}" y="{y - 11:.0f}" width="18" height="14" rx="2" fill="#ffffff" stroke="#64748b" '
         'stroke-dasharray="4 3"/>', "standby (DR)"),
        (f'<rect x="{x:.0f}" y="{y - 11:.0f}" width="18" height="14" rx="2" fill="url(#isolated)" '
         f'stroke="{COLORS["isolated"]}" stroke-width="2"/>', "isolated"),
        (f'<rect x="{x:.0f}" y="{y - 11:.0f}" width="18" height="14" rx="2" fill="{COLORS["active"][0]}" '
         f'stroke="{COLORS["active"][1]}" stroke-width="2"/>', "serving region"),
        (f'<rect x="{x:.0f}" y="{y - 7:.0f}" width="18" height="6" rx="2" fill="#16a34a"/>',
         "load = tenants / capacity"),
    ]
    out = ['<g class="legend">', _text(x, y - 20, "Legend", 12, "bold")]
    dx = 0.0
    for shape, label in items:
        out.append(f'<g transform="translate({dx:.0f},0)">{shape}{_text(x + 24, y, label, 12)}</g>')
        dx += 34 + 7 * len(label)
    out.append("</g>")
    return "\n".join(out)


def topology_html(env: Environment) -> str:
    rows = "\n".join(
        f"<tr><td>{escape(i.name)}</td><td>{escape(i.region)}</td><td>{escape(i.role)}</td>"
        f"<td>{escape(i.model)}</td><td>{len(i.tenants)}/{i.cell.capacity}</td>"
        f"<td>{escape(', '.join(t.id for t in i.tenants) or '-')}</td>"
        f"<td>{'isolated' if i.isolated else ('alerts off' if not i.alerts_enabled else 'in service')}</td></tr>"
        for i in env.instances
    )
    title = escape(f"Stamps topology of {env.project}/{env.stack}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{title}</title>\n<style>body {{ font-family: Segoe UI, Roboto, Arial, sans-serif; margin: 24px; }}"
        " table { border-collapse: collapse; margin-top: 16px; } td, th { border: 1px solid #cbd5e1;"
        " padding: 4px 10px; font-size: 13px; text-align: left; }</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n{topology_svg(env)}"
        "<table><thead><tr><th>CELL</th><th>region</th><th>role</th><th>tenancy</th><th>load</th>"
        f"<th>tenants</th><th>state</th></tr></thead>\n<tbody>\n{rows}\n</tbody></table>\n</body>\n</html>\n"
    )
