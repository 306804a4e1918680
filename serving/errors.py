"""Errors of the prediction service.

::

    Exception
    └── ServingError
        ├── RequestRejected       the client's request cannot be answered: HTTP 4xx, naming field and reason
        └── NoProductionModel     the model store holds no production ensemble to serve (start-up, reload)

A rejection's body has the shape of BentoML's own validation errors, so a client reads
one format for every 4xx::

    {"error": "symbols.2: unknown symbol 'ZZZ' (not in the feature store's universe)",
     "detail": [{"loc": ["symbols", 2], "msg": "unknown symbol 'ZZZ' ...", "type": "unknown_symbol"}]}

Example:
    >>> err = RequestRejected.one(422, ("symbols", 0), "unknown symbol 'ZZZ'", "unknown_symbol")
    >>> err.body()["error"]
    "symbols.0: unknown symbol 'ZZZ'"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Problems listed in one response; a request with thousands of bad rows gets the first ones.
MAX_LISTED = 20


class ServingError(Exception):
    """Base of the service's own errors."""


@dataclass(frozen=True)
class Problem:
    """One reason a request was refused: where (``loc``), why (``msg``), which class (``type``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    def where(self) -> str:
        return ".".join(str(part) for part in self.loc) or "body"


class RequestRejected(ServingError):
    """A request the service refuses, with the HTTP status to answer it with."""

    def __init__(self, status: int, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("RequestRejected needs at least one problem")
        self.status = status
        self.problems = tuple(problems)
        super().__init__(self.summary())

    @classmethod
    def one(cls, status: int, loc: tuple[str | int, ...], msg: str, type_: str) -> RequestRejected:
        return cls(status, [Problem(loc, msg, type_)])

    def summary(self) -> str:
        first = self.problems[0]
        more = len(self.problems) - 1
        return f"{first.where()}: {first.msg}" + (f" (and {more} more)" if more else "")

    def body(self) -> dict[str, Any]:
        return {"error": self.summary(),
                "detail": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in self.problems[:MAX_LISTED]]}


class NoProductionModel(ServingError):
    """No ``production`` ensemble in the model store the service reads."""
