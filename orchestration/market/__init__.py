"""Market data in plain Python: the bar contract, sources, validation and the raw warehouse layer.

Nothing here imports Dagster; the assets in ``orchestration.defs.market`` call it.
"""
