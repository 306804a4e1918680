"""Names of archived records: plain file names only, checked before anything is written or read.

The archive stores objects by content hash, so a name never becomes a path today; it is still
refused when it could become one tomorrow (an export, a restore to files, ``reports/<date>/<name>``),
or could hide in a listing: ``..``, separators, hidden names, control characters, overlong names.

Example:
    >>> check_name("tax_lots.csv")
    'tax_lots.csv'
"""

from __future__ import annotations

from trader.compliance.errors import ComplianceError

MAX_NAME = 128


def check_name(name: object) -> str:
    """``name`` if it is a plain file name an archive record may have; else one line saying why not.

    Refused: anything but a non-empty ``str``, ``.``/``..``, a path separator (``/`` or ``\\``), a
    hidden name (leading ``.``, which also keeps clear of the writer's ``.tmp-`` files),
    whitespace at either end, control characters, and more than :data:`MAX_NAME` characters.

    >>> check_name("form_8949.csv")
    'form_8949.csv'
    >>> check_name("../manifest.jsonl")
    Traceback (most recent call last):
    ...
    trader.compliance.errors.ComplianceError: archive: name '../manifest.jsonl': has a path separator; must be a plain file name
    """
    reason = _name_problem(name)
    if reason:
        shown = repr(name[:40] + "…" if len(name) > 40 else name) if isinstance(name, str) else type(name).__name__
        raise ComplianceError(f"archive: name {shown}: {reason}; must be a plain file name")
    return name  # type: ignore[return-value]


def _name_problem(name: object) -> str:
    if not isinstance(name, str):
        return "not a string"
    if not name:
        return "empty"
    if name in (".", ".."):
        return "a directory reference"
    if "/" in name or "\\" in name:
        return "has a path separator"
    if name.startswith("."):
        return "hidden (starts with '.')"
    if any(ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0 for ch in name):
        return "has a control character"
    if name != name.strip():
        return "starts or ends with whitespace"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters ({len(name)})"
    return ""
