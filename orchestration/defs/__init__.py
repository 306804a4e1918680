"""Dagster definitions grouped by domain; each domain exposes ``build_defs``."""
