"""Alphaline orchestration: Dagster definitions, market-data sources and the CLI."""
