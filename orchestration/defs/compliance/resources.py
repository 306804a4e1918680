"""Where the EOD compliance assets read and write: the trader's store, the reports, the checkpoints, the archive.

Every path defaults to the DESIGN.md §2 layout under ``ALPHALINE_HOME``; a team deployment
points ``store_url`` at Postgres and leaves the rest alone.
"""

from pathlib import Path
from typing import Self

import dagster as dg
from pydantic import Field

from orchestration.defs.compliance.paths import CompliancePaths
from trader.compliance.anchor import anchor_file
from trader.servers import server_store_url


class ComplianceResource(dg.ConfigurableResource):
    """Locations and ledger options of the end-of-day compliance run.

    Example:
        >>> ComplianceResource.for_home(Path("/tmp/home")).archive_root
        '/tmp/home/archive'
    """

    store_url: str = Field(description="SQLAlchemy URL of the trader's state store (fills, audit log); read only.")
    reports_dir: str = Field(description="Reports go to <reports_dir>/<YYYY-MM-DD>/.")
    archive_root: str = Field(description="The WORM archive (content-addressed objects + hash-chained manifest).")
    work_dir: str = Field(description="ledger/<date>.json (each day's ledger checkpoint), audit/<date>.json (the end-to-end "
                                      "chain verdict) and broker_fees/<date>.csv (fill_id,fee or date,fee statements).")
    allow_short: bool = Field(default=False, description="Let sells beyond the shares held open short lots.")
    retention_years: int = Field(default=6, ge=1, description="Retention recorded on each archived record.")
    anchor_file: str = Field(default="", description="The append-only anchor of each sealed day's audit head and Merkle "
                                                     "root (anchors/<mode>.jsonl); empty: none.")
    resume_from_checkpoints: bool = Field(
        default=True, description="Resume the ledger from the last sealed checkpoint instead of replaying every fill."
    )

    @classmethod
    def for_home(cls, home: Path, *, mode: str = "live", **overrides: object) -> Self:
        """The DESIGN.md §2 layout under ``home`` (e.g. ``settings.home``), with optional overrides.

        ``mode`` is whose store the run closes: it names the anchor file (``anchors/<mode>.jsonl``).
        """
        home = Path(home)
        defaults = {
            "store_url": server_store_url("live") or f"sqlite:///{home / 'trader' / 'trader.db'}",
            "reports_dir": str(home / "reports"),
            "archive_root": str(home / "archive"),
            "work_dir": str(home / "compliance"),
            "anchor_file": str(anchor_file(home, mode)),
        }
        return cls(**{**defaults, **overrides})

    def paths(self) -> CompliancePaths:
        """The same settings as the plain-Python :class:`CompliancePaths` the EOD steps take."""
        return CompliancePaths(
            store_url=self.store_url, reports_dir=Path(self.reports_dir), archive_root=Path(self.archive_root),
            work_dir=Path(self.work_dir), allow_short=self.allow_short,
            retention_years=self.retention_years, resume=self.resume_from_checkpoints,
            anchor_file=Path(self.anchor_file) if self.anchor_file else None,
        )
