"""Dashboards: one global and one per CELL instance, KQL bound to the plan's real ids, HTML rendering."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.monitoring.catalog import EXPORTED_TO_LOGS
from stamps.monitoring.dashboards import GRID_COLUMNS, SIZES, Tile, layout
from stamps.monitoring.render import markdown_html, planned_dashboards, write_dashboards
from stamps.offline import Plan
from stamps.offline.mocks import AzureMocks

DASH = "azure-native:portal:Dashboard"
CELLS = ("banking-eus", "banking-wus", "retail-eus", "retail-wus", "healthcare-eus", "healthcare-wus",
         "shared-smb-eus")
VOID = {"meta", "br", "img", "input", "link", "hr"}


def arm_id(plan: Plan, typ: str, name: str) -> str:
    r = plan.get(typ, name)
    return AzureMocks().arm_id(r["type"], r["name"], r["inputs"])


def parts(plan: Plan, name: str) -> list[dict[str, Any]]:
    return plan.get(DASH, name)["inputs"]["properties"]["lenses"][0]["parts"]


def inputs(part: dict[str, Any]) -> dict[str, Any]:
    return {i["name"]: i.get("value") for i in part["metadata"]["inputs"]}


def queries(plan: Plan, name: str) -> dict[str, str]:
    return {inputs(p)["PartTitle"]: inputs(p)["Query"] for p in parts(plan, name) if p["metadata"]["inputs"]}


def test_one_global_and_one_dashboard_per_cell_instance(prod_plan: Plan) -> None:
    names = {r["inputs"]["dashboardName"]: r for r in prod_plan.by_type(DASH)}
    assert set(names) == {"dash-stamps-prod-global"} | {f"dash-stamps-prod-{k}" for k in CELLS}
    assert names["dash-stamps-prod-global"]["inputs"]["tags"]["hidden-title"] == "Stamps Pattern – Global Operations"
    banking = names["dash-stamps-prod-banking-wus"]["inputs"]
    assert banking["tags"]["hidden-title"] == "Stamps Pattern – CELL Operations: banking (westus, standby)"
    assert banking["resourceGroupName"] == "rg-stamps-prod-cell-banking-wus" and banking["location"] == "westus"
    assert banking["tags"]["cell"] == "banking" and banking["tags"]["tenancy"] == "dedicated"


def test_global_tiles_are_bound_to_the_workspace_app_insights_and_gateways(prod_plan: Plan) -> None:
    workspace = prod_plan.outputs["workspaceId"]
    appi = arm_id(prod_plan, "azure-native:applicationinsights:Component", "global-appi")
    gateways = [arm_id(prod_plan, "azure-native:network:ApplicationGateway", f"region-{r}-agw")
                for r in ("eastus", "westus")]
    tiles = queries(prod_plan, "monitoring-dash-global")
    assert set(tiles) == {"Global Availability by Country", "Traffic Distribution by Region",
                          "Response Time Trend (5-minute bins)", "Error Rate by Region"}
    for p in parts(prod_plan, "monitoring-dash-global"):
        if p["metadata"]["inputs"]:
            assert inputs(p)["Scope"] == {"resourceIds": [workspace]}
    for title in ("Global Availability by Country", "Response Time Trend (5-minute bins)"):
        assert tiles[title].startswith("AppRequests") and f'_ResourceId =~ "{appi}"' in tiles[title]
    assert "bin(TimeGenerated, 5m)" in tiles["Response Time Trend (5-minute bins)"]
    assert "by ClientCountryOrRegion" in tiles["Global Availability by Country"]
    for title in ("Traffic Distribution by Region", "Error Rate by Region"):
        for gw, region in zip(gateways, ("eastus", "westus"), strict=True):
            assert f'"{gw.lower()}", "{region}"' in tiles[title]


@pytest.mark.parametrize("key", CELLS)
def test_cell_tiles_read_only_their_own_cell(prod_plan: Plan, key: str) -> None:
    cells = prod_plan.outputs["cells"]
    # The storage a CELL instance uses: its own account, or (a standby) its primary's geo-redundant one.
    (primary,) = [k for k, c in cells.items() if c["cell"] == cells[key]["cell"] and c["role"] == "primary"]
    own = {
        arm_id(prod_plan, "azure-native:app:ContainerApp", f"cell-{key}-app"),
        arm_id(prod_plan, "azure-native:sql:Database", f"cell-{key}-db"),
        arm_id(prod_plan, "azure-native:storage:StorageAccount", f"cell-{primary}-st"),
    }
    assert prod_plan.outputs["cells"][key]["appId"] in own
    tiles = queries(prod_plan, f"monitoring-dash-{key}")
    assert {"CELL Health Status", "Database Performance", "Storage Utilization"} <= set(tiles)
    text = "\n".join(tiles.values()).lower()
    for rid in own:
        assert rid.lower() in text
    referenced = set(re.findall(r"/subscriptions/[^\"]+", text))
    assert referenced <= {r.lower() for r in own}, "a CELL dashboard must not read another CELL's resources"


def test_kql_uses_real_tables_and_exportable_metrics(prod_plan: Plan) -> None:
    exported = set().union(*EXPORTED_TO_LOGS.values())
    for d in prod_plan.by_type(DASH):
        for title, kql in queries(prod_plan, d["name"]).items():
            for bogus in ("cloud_RegionName", "Heartbeat", "UsedCapacity", "| where success"):
                assert bogus not in kql, (d["name"], title, bogus)
            names = re.findall(r'MetricName == "(\w+)"', kql)
            for group in re.findall(r"MetricName in \(([^)]*)\)", kql):
                names += re.findall(r'"(\w+)"', group)
            names += re.findall(r'"[^"]+", "[^"]+", "(\w+)", [0-9.]+', kql)  # health signals table
            assert all(n in exported for n in names), (title, names)
            if "AzureMetrics" in kql:
                assert names, title


def test_layout_fits_the_grid_without_overlap(prod_plan: Plan) -> None:
    for d in planned_dashboards(prod_plan):
        cells: set[tuple[int, int]] = set()
        for t in d.tiles:
            assert t.x + t.width <= GRID_COLUMNS
            area = {(x, y) for x in range(t.x, t.x + t.width) for y in range(t.y, t.y + t.height)}
            assert not area & cells, f"{d.name}: {t.title} overlaps another tile"
            cells |= area


def test_layout_packs_rows() -> None:
    tiles = [Tile(str(i), "grid", size, lambda _: "") for i, size in
             enumerate(["banner", "large", "medium", "small", "wide", "large"])]
    placed = [(p.x, p.y, p.col_span, p.row_span) for p in layout(tiles)]
    assert placed == [(0, 0, 12, 2), (0, 2, 8, 4), (8, 2, 4, 4), (0, 6, 4, 3), (4, 6, 8, 3), (0, 9, 8, 4)]
    assert SIZES["large"] == (8, 4)


class _Balanced(HTMLParser):
    """Fails on any element closed out of order or left open."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def well_formed(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    parser = _Balanced()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"{path.name}: unclosed {parser.stack}"
    ET.fromstring(text.replace("<!DOCTYPE html>", "", 1))  # XHTML-clean: parses as XML too
    return "".join(parser.text)


def test_html_pages_render_every_tile(prod_plan: Plan, tmp_path: Path) -> None:
    written = write_dashboards(prod_plan, tmp_path)
    assert [p.name for p in written[:2]] == ["index.html", "dash-stamps-prod-global.html"]
    assert len(written) == 1 + 1 + len(CELLS)
    index = well_formed(tmp_path / "index.html")
    assert "Stamps Pattern – Global Operations" in index
    html = (tmp_path / "index.html").read_text()
    for p in written[1:]:
        assert f'href="{p.name}"' in html
    for d in planned_dashboards(prod_plan):
        page = tmp_path / d.file_name
        text = well_formed(page)
        raw = page.read_text()
        assert d.title in text
        for t in d.tiles:
            assert t.title in text
            assert f"grid-column: {t.x + 1} / span {t.width}; grid-row: {t.y + 1} / span {t.height};" in raw
            if t.query:
                assert t.query in text, "the KQL is shown verbatim (unescaped by the parser)"
            for rid in t.bound:
                assert f'title="{rid}"' in raw
    banking = well_formed(tmp_path / "dash-stamps-prod-banking-eus.html")
    assert "banking-corp" in banking and "dedicated CELL" in banking


def test_markdown_is_escaped() -> None:
    out = markdown_html("## Title <b>\n- **bold** `code` & <script>alert(1)</script>\nplain")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.startswith("<h2>Title &lt;b&gt;</h2>")
    assert "<li><strong>bold</strong> <code>code</code> &amp;" in out and out.endswith("<p>plain</p>")


def test_dashboards_command_renders_a_saved_plan(prod_plan: Plan, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "plan.json"
    prod_plan.write(saved)
    out = tmp_path / "html"
    assert main(["dashboards", "--plan", str(saved), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(out / "index.html") and len(printed) == 1 + 1 + len(CELLS)
    assert (out / "dash-stamps-prod-shared-smb-eus.html").is_file()
    assert main(["dashboards", "--plan", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "--plan" in capsys.readouterr().err
