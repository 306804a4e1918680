"""ASGI middleware of the service: JSON bodies only on the prediction routes.

BentoML picks a body parser from the request's ``Content-Type``: multipart and form
bodies go to its file-upload parser, which answers a malformed body with HTTP 500. The
prediction API takes JSON only, so:

* ``application/json`` (or ``application/*+json``) and no ``Content-Type`` pass as they are;
* ``application/x-www-form-urlencoded``, what ``curl -d '{"symbols": ...}'`` sends unless
  told otherwise, is relabelled JSON: the body is parsed as JSON and refused (HTTP 400)
  if it is not;
* anything else is refused with HTTP 415 and a message.

Example:
    >>> _media("application/json; charset=utf-8"), _is_json("application/problem+json"), _is_json("text/plain")
    ('application/json', True, False)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.responses import JSONResponse

from serving.refusals import log_refusal

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
CURL_DEFAULT = "application/x-www-form-urlencoded"


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = _media(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodiesOnly:
    """JSON bodies for POSTs on ``paths``: curl's default form type is read as JSON, other types get HTTP 415."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], paths: Iterable[str] = ()) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in self.paths:
            headers = scope.get("headers", [])
            content_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), "")
            if content_type and _media(content_type) == CURL_DEFAULT:
                relabelled = [(k, b"application/json" if k == b"content-type" else v) for k, v in headers]
                scope = {**scope, "headers": relabelled}
            elif content_type and not _is_json(content_type):
                msg = f"Content-Type {_media(content_type)!r} is not accepted: send application/json"
                body = {"error": f"body: {msg}", "detail": [{"loc": ["body"], "msg": msg, "type": "unsupported_media_type"}]}
                log_refusal("POST", scope["path"], 415, f"body: {msg}")
                await JSONResponse(body, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)
