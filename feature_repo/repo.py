"""What the Feast CLI sees: ``cd feature_repo && feast apply`` / ``feast feature-views list``.

Alphaline registers the same objects itself (the ``feast_registry`` asset calls
:func:`feature_repo.definitions.feast_objects`); this module exists so that Feast's
own CLI, which collects objects defined at module level, finds the identical set.
It reads ``ALPHALINE_HOME`` (default ``.alphaline``), ``ALPHALINE_BAR_MINUTES``
(default 15) and ``ALPHALINE_FEAST_CONFIG`` (``prod``: the sources are the PostgreSQL
tables) because the CLI gives it no other way to learn them.
"""

import datetime as _dt
import os as _os
from pathlib import Path as _Path

from feature_repo.definitions import feast_objects as _feast_objects

_home = _Path(_os.environ.get("ALPHALINE_HOME", ".alphaline")).resolve()
_schema = None
if _os.environ.get("ALPHALINE_FEAST_CONFIG") == "prod":
    from feature_repo.store import load_config as _load_config
    from feature_repo.store import offline_tables as _offline_tables

    _tables = _offline_tables(_load_config(_home, "prod"))
    _schema = _tables.schema if _tables else None
_repo = _feast_objects(_home / "feast" / "offline", bar_length=_dt.timedelta(minutes=int(_os.environ.get("ALPHALINE_BAR_MINUTES", "15"))),
                       postgres_schema=_schema)

symbol = _repo.entity
model_inputs = _repo.service
globals().update({view.name: view for view in _repo.views})
globals().update({source.name: source for source in _repo.sources})
