"""BentoML service `Ensemble`: the production ensemble over HTTP (DESIGN.md §3.4)."""
