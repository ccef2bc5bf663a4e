"""`stamps routes`: where every tenant's request, every probe and every public entry would go, from a plan."""

from stamps.routes.walk import EntryPoint, Finding, RouteReport, TenantRoute, check_routes

__all__ = ["EntryPoint", "Finding", "RouteReport", "TenantRoute", "check_routes"]
