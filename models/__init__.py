"""Models: point-in-time training data, purged walk-forward CV, learners, ensemble, gates, backtest, registry.

Imports only :mod:`feature_repo` of ours (DESIGN.md §1).
"""
