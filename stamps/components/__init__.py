"""ComponentResources, one per concern of the runbook: global, regional and CELL layers, monitoring, tenants."""
