"""Subcommands of the `stamps` CLI, one module each."""
