"""Execution algorithms: large orders go out as TWAP/VWAP child slices over the next bars (``execution`` in trader.yaml).

* :mod:`trader.execution.algos` — the volume profile, the participation test, the child schedule (pure);
* :mod:`trader.execution.parents` — the parent order, its row in ``parent_orders`` and its children's ids;
* :mod:`trader.execution.desk` — :class:`ExecutionDesk`, between sizing and routing in the runner's cycle.
"""

from trader.execution.algos import Slice, VolumeProfile, build_schedule, twap_schedule, volume_profiles, vwap_schedule
from trader.execution.desk import ExecutionDesk
from trader.execution.parents import ParentOrder, ParentStatus, child_id, lineage, parent_of

__all__ = ["ExecutionDesk", "ParentOrder", "ParentStatus", "Slice", "VolumeProfile", "build_schedule", "child_id", "lineage",
           "parent_of", "twap_schedule", "volume_profiles", "vwap_schedule"]
