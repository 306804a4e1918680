"""A sensor on ``$ALPHALINE_HOME/imports/``: every new or changed file is imported."""


import json
import os
from pathlib import Path

import dagster as dg

from orchestration.defs.market.schedules import IMPORT_JOB
from orchestration.market.files import SUFFIXES


def _imports_dir() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")) / "imports"


@dg.sensor(job_name=IMPORT_JOB, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Imports each CSV/Parquet file dropped into $ALPHALINE_HOME/imports/ (new or modified).")
def imports_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    folder = _imports_dir()
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
