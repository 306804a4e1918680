"""Errors of the compliance core, each with a one-line message naming the input, the field and the reason.

Hierarchy::

    ComplianceError
     ├── FillError (ValueError)   a fill fails validation (float money, qty <= 0, naive ts, duplicate id)
     ├── LedgerError              fills that cannot be booked: selling more than a long-only ledger holds,
     │                            fills applied out of time order, a missing closing price
     └── WormViolation            the archive refused to overwrite or delete a record

Bugs are not wrapped: they raise their own exception.
"""

from __future__ import annotations


class ComplianceError(Exception):
    """Base of every compliance error; ``str(err)`` is the one-line message."""


class FillError(ComplianceError, ValueError):
    """A fill fails validation.

    Args:
        fill_id: the offending fill (``"?"`` when the id itself is missing).
        field: the column, e.g. ``qty``.
        reason: why, in a few words.
    """

    def __init__(self, fill_id: str, field: str, reason: str):
        self.fill_id, self.field, self.reason = fill_id, field, reason
        super().__init__(f"fill {fill_id}: {field}: {reason}")


class LedgerError(ComplianceError):
    """Fills that are valid one by one but cannot be booked together (e.g. an oversell on a long-only ledger)."""


class WormViolation(ComplianceError):
    """The write-once archive refused an overwrite or a deletion."""
