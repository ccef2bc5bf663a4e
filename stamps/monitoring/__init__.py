"""Monitoring as data: the alert catalog, dashboard definitions, and offline HTML/SVG renderings.

Modules here import no Pulumi resources, so config validation and the CLI can use them cheaply;
`stamps/components/monitoring.py` turns them into Azure resources.
"""
