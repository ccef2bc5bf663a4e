"""Topology drawing: regions, CELL instances, tenants, load, active region and isolation, as valid SVG/HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.monitoring.topology import environment_from_stack, topology_html, topology_svg
from tests.conftest import ROOT, StackFile

NS = {"svg": "http://www.w3.org/2000/svg"}


def groups(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return {g.get("id", ""): g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("id")}


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter("{http://www.w3.org/2000/svg}text")]


def rects(el: ET.Element) -> list[ET.Element]:
    return list(el.iter("{http://www.w3.org/2000/svg}rect"))


def test_prod_topology_shows_regions_cells_and_tenants() -> None:
    env = environment_from_stack(ROOT, "prod")
    g = groups(topology_svg(env))
    assert {"region-eastus", "region-westus"} <= set(g)
    assert {k for k in g if k.startswith("cell-")} == {f"cell-{i.key}" for i in env.instances}
    assert "SERVING" in texts(g["region-eastus"]) and "SERVING" not in texts(g["region-westus"])
    assert "DR region" in texts(g["region-westus"])
    smb = texts(g["cell-shared-smb-eus"])
    assert "shared-smb" in smb and "PRIMARY" in smb
    assert "shared · shared-smb-eus · 2/100 tenants" in smb and "startup, fintech-scale" in smb
    assert any(t.startswith("load 2%") for t in smb)
    banking = g["cell-banking-wus"]
    assert "STANDBY" in texts(banking) and "banking-corp" in texts(banking)
    assert rects(banking)[0].get("stroke-dasharray"), "standby cards are dashed"
    assert rects(g["cell-banking-eus"])[0].get("fill") != rects(g["cell-retail-eus"])[0].get("fill"), \
        "dedicated and shared CELLs differ in colour"


def test_isolated_and_alerts_off_cells_are_marked(stack_file: StackFile) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cells = {c["name"]: c for c in cfg["stamps:cells"]}
        cells["retail"]["isolation"] = {"reason": "incident 42", "by": "sre", "at": "2030-01-01T00:00Z"}
        cells["healthcare"]["alertsEnabled"] = False

    g = groups(topology_svg(environment_from_stack(ROOT, "prod", stack_file(mutate))))
    retail = g["cell-retail-eus"]
    assert "ISOLATED" in texts(retail)
    assert any(r.get("fill") == "url(#isolated)" for r in rects(retail))
    assert "load 0% · replicas 0 (isolated)" in texts(retail)
    assert "ISOLATED" not in texts(g["cell-retail-wus"])
    assert "ALERTS OFF" in texts(g["cell-healthcare-eus"]) and "ALERTS OFF" in texts(g["cell-healthcare-wus"])
    assert "ALERTS OFF" not in texts(g["cell-banking-eus"])


def test_failover_highlights_the_dr_region(stack_file: StackFile) -> None:
    env = environment_from_stack(ROOT, "prod", stack_file(lambda c: c["stamps:regions"][0].update(servingFrom="dr")))
    svg = topology_svg(env)
    g = groups(svg)
    assert "SERVING EASTUS" in texts(g["region-westus"]) and "SERVING" not in texts(g["region-eastus"])
    assert "(failed over)" in svg


def test_many_tenants_are_summarised(stack_file: StackFile) -> None:
    def crowd(cfg: dict[str, Any]) -> None:
        cfg["stamps:tenants"] += [{"id": f"tenant-{i:02d}", "tier": "basic", "cell": "shared-smb",
                                   "email": f"t{i}@example.test"} for i in range(40)]

    g = groups(topology_svg(environment_from_stack(ROOT, "prod", stack_file(crowd))))
    smb = texts(g["cell-shared-smb-eus"])
    assert "shared · shared-smb-eus · 42/100 tenants" in smb
    more = [t for t in smb if t.startswith("+") and t.endswith(" more")]
    assert len(more) == 1
    shown = sum(len(t.split(", ")) for t in smb if t.startswith(("startup", "tenant-")))
    assert shown + int(more[0].split()[0][1:]) == 42


def test_topology_command_writes_svg_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svg, page = tmp_path / "t.svg", tmp_path / "out" / "t.html"
    assert main(["topology", "--project-dir", str(ROOT), "--out", str(svg)]) == 0
    assert main(["topology", "--project-dir", str(ROOT), "--out", str(page)]) == 0
    assert capsys.readouterr().out.split() == [str(svg), str(page)]
    groups(svg.read_text())
    html = ET.fromstring(page.read_text().replace("<!DOCTYPE html>", "", 1))
    assert html.find("body/{http://www.w3.org/2000/svg}svg") is not None
    rows = html.findall("body/table/tbody/tr")
    assert len(rows) == 7 and [c.text for c in rows[0]][:3] == ["banking", "eastus", "primary"]
    assert main(["topology", "--project-dir", str(ROOT), "--out", str(tmp_path / "t.png")]) == 2
    assert ".svg or .html" in capsys.readouterr().err


def test_html_embeds_the_same_svg() -> None:
    env = environment_from_stack(ROOT, "prod")
    assert topology_svg(env) in topology_html(env)
