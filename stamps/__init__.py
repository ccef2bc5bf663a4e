"""Stamps pattern on Azure: config, components and the offline plan."""
