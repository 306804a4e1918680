"""Logging of refused requests: one WARNING line per client error (HTTP 4xx), never a traceback.

A refusal is the client's mistake, not the server's, so it gets one line naming the
method, path, status and reason::

    WARNING alphaline.serving POST /predict -> 400 allow_stale: Input should be a valid boolean

Real server errors (5xx, bugs) keep BentoML's ERROR line with its traceback.

Why a logging filter: BentoML 1.4 parses a request body into the API's input model
itself (``_bentoml_impl.server.app.api_endpoint_wrapper``); a body that fails the model
(wrong types, malformed JSON) becomes HTTP 400, and any ``BentoMLException`` its own
status, but each is logged through ``bentoml._internal.server.http_app.log_exception``:
ERROR with the full traceback, before our handler ever runs. Catching the error earlier
is not possible from the service, and replacing BentoML's function would break on its
next release, so :class:`ClientErrorsAsWarnings` sits on that logger and turns exactly
those records into our one-line warning. Anything else passes through untouched.

Example:
    >>> import logging, sys
    >>> from pydantic import BaseModel, ValidationError
    >>> class Body(BaseModel):
    ...     n: int
    >>> try:
    ...     Body.model_validate({"n": "x"})
    ... except ValidationError as exc:
    ...     print(describe(exc))
    n: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

import logging
import traceback
from types import TracebackType
from typing import Any

logger = logging.getLogger("alphaline.serving")
#: The logger BentoML's ``log_exception`` writes to.
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"
#: The BentoML function that parses a request body: a validation error raised under it is the client's.
_PARSER = "from_http_request"


def log_refusal(method: str, path: str, status: int, message: str, extra: str = "") -> None:
    """One WARNING line for a request refused with ``status`` (4xx)."""
    logger.warning("%s %s -> %d %s%s", method, path, status, message, f" [{extra}]" if extra else "")


def describe(exc: Any) -> str:
    """``loc: msg`` of a pydantic ``ValidationError``'s first error (input values left out: they may be features)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def client_error(exc: BaseException, tb: TracebackType | None) -> tuple[int, str] | None:
    """``(status, message)`` when BentoML refused the request for the client's fault, else ``None`` (a bug)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        # BentoML answers 400 for any ValidationError; only one raised while parsing the body is the client's.
        parsing = any(frame.f_code.co_name == _PARSER for frame, _ in traceback.walk_tb(tb))
        return (400, describe(exc)) if parsing else None
    if isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
        return exc.error_code.value, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


class ClientErrorsAsWarnings(logging.Filter):
    """On BentoML's HTTP logger: a client error's ERROR-with-traceback becomes :func:`log_refusal`'s one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        refused = client_error(record.exc_info[1], record.exc_info[2])
        if refused is None:
            return True  # a real server error: keep BentoML's ERROR and traceback
        path, method = _path_and_method(record)
        log_refusal(method, path, *refused)
        return False


def _path_and_method(record: logging.LogRecord) -> tuple[str, str]:
    # log_exception logs "Exception on %s [%s]" with (path, method).
    args = record.args if isinstance(record.args, tuple) else ()
    return (str(args[0]), str(args[1])) if len(args) == 2 else ("?", "?")


def install() -> None:
    """Put :class:`ClientErrorsAsWarnings` on BentoML's HTTP logger (once per process)."""
    target = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorsAsWarnings) for f in target.filters):
        target.addFilter(ClientErrorsAsWarnings())
