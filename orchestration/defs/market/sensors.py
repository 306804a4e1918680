"""A sensor on ``$ALPHALINE_HOME/imports/``: every new or changed file is imported."""


import json
from pathlib import Path

import dagster as dg

from orchestration.defs.market.schedules import IMPORT_JOB
from orchestration.market.files import SUFFIXES


def build_imports_sensor(folder: Path) -> dg.SensorDefinition:
    @dg.sensor(name="imports_sensor", job_name=IMPORT_JOB, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Imports each CSV/Parquet file dropped into {folder} (new or modified).")
    def imports_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return _scan(folder, context.cursor)

    return imports_sensor


def _scan(folder: Path, cursor: str | None) -> dg.SensorResult:
    """One run request per file that is new or changed since the cursor (path → mtime)."""
    seen: dict[str, float] = json.loads(cursor) if cursor else {}
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)) if folder.is_dir() else []
    requests = []
    for f in files:
        mtime = f.stat().st_mtime
        if seen.get(str(f)) == mtime:
            continue
        seen[str(f)] = mtime
        requests.append(
            dg.RunRequest(
                run_key=f"{f.name}:{mtime}",
                run_config={"ops": {"imported_bars": {"config": {"paths": [str(f)]}}}},
                tags={"alphaline/file": f.name},
            )
        )
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new files in {folder}"), cursor=json.dumps(seen))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen))
