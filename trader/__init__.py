"""The trader service (DESIGN.md §3.5). Lean by design: no dagster, feast, torch or bentoml on its path."""
