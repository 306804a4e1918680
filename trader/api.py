"""The ops API (``trader api``): read the trader's state over HTTP, and pull the kill switch.

Read endpoints are open (bind to 127.0.0.1, the default, or put them behind your proxy);
``POST /kill`` and ``POST /resume`` need ``Authorization: Bearer <TRADER_API_TOKEN>``:
no header → 401, a wrong token → 403, no token configured on the server → 503 (fail closed).
Money and quantities are JSON strings (exact decimals); times are ISO 8601 UTC. No response
and no log line carries a secret: the token is compared, never echoed, and the store URL
is not exposed.

========================  ==================================================================
``GET /health``           200 ``{"status": "ok", ...}`` while the store answers, else 503 with the reason
``GET /metrics``          Prometheus metrics read from the store (:class:`trader.metrics.StoreCollector`)
``GET /status``           trading state (who, why, when), the last cycle's summary, counts
``GET /positions``        open positions (``?all=true``: flat ones with realised P&L too)
``GET /orders``           recent orders (``?status=working``, ``?limit=100``)
``GET /pnl``              realised, unrealised, fees, equity, peak, drawdown, today's P&L
``GET /audit/verify``     walks the hash chain: ok, count, head, first bad record
``POST /kill``            ``{"reason": "...", "by": "alice"}`` → HALTED, working orders cancelled
``POST /resume``          ``{"by": "alice", "reason": "..."}`` → ACTIVE
``GET /compliance/...``   token-protected, read-only: Form 8949, Schedule D and tax lots per year, a sealed day
                          with its Merkle inclusion proofs (:mod:`trader.api_compliance`)
========================  ==================================================================

Example:
    >>> from fastapi.testclient import TestClient
    >>> import tempfile
    >>> app = create_app(store=TraderStore(f"sqlite:///{tempfile.mkdtemp()}/t.db"), token=None)
    >>> TestClient(app).get("/status").json()["state"]
    'active'
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from trader.domain import ZERO, TradingState
from trader.errors import BrokerError
from trader.runner import session_start
from trader.store import TraderStore

#: Cancels every working order at the venue and returns their ids (``Broker.cancel_all``);
#: ``None`` when the venue lives inside the run loop's process (sim), which cancels on its next cycle.
Canceller = Callable[[], list[str]]


def plain(value: Any) -> Any:
    """JSON-safe and exact: Decimal → str, datetime → ISO 8601, enums → their value, recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return getattr(value, "value", value)


class KillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    by: Annotated[str, Field(min_length=1, max_length=128)] = "ops-api"


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=500)] = ""


#: Module level: FastAPI resolves the (postponed) annotations below against this module's globals.
_BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _bearer_guard(token: SecretStr | None) -> Callable[..., None]:
    def guard(credentials: Credentials) -> None:
        if token is None:
            raise HTTPException(503, "kill/resume and /compliance are disabled: TRADER_API_TOKEN is not set on the server")
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        # Constant-time comparison: response timing must not reveal how much of a guess was right.
        if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
            raise HTTPException(403, "invalid bearer token")

    return guard


def status_payload(store: TraderStore, *, mode: str | None = None) -> dict[str, Any]:
    """The state, the last cycle and a few counts (shared by ``GET /status`` and ``trader status``).

    A store nothing has run against says so in ``note``, with what to do (``mode``: whose store it is).
    """
    state = store.trading_state()
    last = store.latest_audit("cycle")
    seq, head = store.audit_head()
    # The store's default record ("no state recorded yet") says what is missing; a reader needs what it means.
    reason = state.reason if state.changed_at else "trading allowed: never halted (no kill or resume recorded)"
    out = {"state": state.state, "reason": reason, "changed_by": state.changed_by, "changed_at": state.changed_at,
           "last_cycle": last.payload if last else None, "working_orders": len(store.working_orders()),
           "open_positions": sum(1 for p in store.positions().values() if p.qty != 0),
           "audit": {"records": seq, "head": head}}
    if last is None:
        whose = f"{mode} " if mode else ""
        hint = "" if mode == "sim" else " Each mode keeps its own store; the demo trades in sim (`trader api --mode sim`)."
        out["note"] = f"no trading cycle in this {whose}store yet: `trader run --mode {mode or '<mode>'}` records one.{hint}"
    return plain(out)


def health_response(store: TraderStore) -> JSONResponse:
    """200 while the store answers (HALTED is healthy: the API works and says so), 503 with the reason otherwise."""
    try:
        state = store.trading_state().state
        last = store.latest_audit("cycle")
    except Exception as exc:  # whatever the store raises, the answer is the same: not healthy, and why
        reason = (str(exc).splitlines() or [""])[0][:200]
        return JSONResponse({"status": "unavailable", "reason": f"state store: {type(exc).__name__}: {reason}"}, status_code=503)
    return JSONResponse({"status": "ok", "state": state.value, "last_cycle": last.payload["ts"] if last else None})


def pnl_payload(store: TraderStore) -> dict[str, Any]:
    """Realised and unrealised P&L, fees, equity, drawdown and today's P&L, from the store and the last cycle."""
    positions = store.positions()
    realized = sum((p.realized_pnl for p in positions.values()), ZERO)
    fees = sum((p.fees for p in positions.values()), ZERO)
    last = store.latest_audit("cycle")
    out: dict[str, Any] = {"realized_pnl": realized, "fees": fees, "net_realized_pnl": realized - fees,
                           "unrealized_pnl": None, "equity": None, "cash": None, "as_of": None}
    if last is not None:
        equity, cash = Decimal(last.payload["equity"]), Decimal(last.payload["cash"])
        cost = sum((p.qty * p.avg_cost for p in positions.values()), ZERO)
        peak = store.peak_equity() or equity
        day_start = store.first_equity_since(session_start(dt.datetime.fromisoformat(last.payload["ts"]))) or equity
        out |= {"equity": equity, "cash": cash, "as_of": last.payload["ts"], "unrealized_pnl": equity - cash - cost,
                "peak_equity": peak, "drawdown": (peak - equity) / peak if peak > 0 else ZERO,
                "day_start_equity": day_start, "day_pnl": equity - day_start}
    out["by_symbol"] = [{"symbol": s, "qty": p.qty, "realized_pnl": p.realized_pnl, "fees": p.fees} for s, p in positions.items()]
    return plain(out)


def create_app(*, store: TraderStore, token: SecretStr | None, canceller: Canceller | None = None,
               mode: str | None = None, archive_root: Path | None = None) -> FastAPI:
    """The ops API over ``store``; ``token`` guards kill/resume and ``/compliance`` (from :class:`trader.config.Secrets`);
    ``mode`` names whose store it is in ``/status``; ``archive_root`` is the WORM archive (default
    ``$ALPHALINE_HOME/archive``).

    ``/docs`` is Swagger UI served from this app (``fastapi_offline`` ships its JS and CSS), so it works offline.
    """
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(title="Alphaline trader ops API", version=_version(), docs_url="/docs", redoc_url=None,
                         static_url="/docs-static")
    guard = _bearer_guard(token)
    authorized = Depends(guard)

    @app.get("/health")
    def health() -> JSONResponse:
        return health_response(store)

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from trader.metrics import store_registry

        return Response(generate_latest(store_registry(store)), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status")
    def status() -> dict[str, Any]:
        return status_payload(store, mode=mode)

    @app.get("/positions")
    def positions(include_flat: Annotated[bool, Query(alias="all")] = False) -> list[dict[str, Any]]:
        return [plain(p.to_record()) for p in store.positions().values() if include_flat or p.qty != 0]

    @app.get("/orders")
    def orders(status: Literal["working", "all"] = "all", limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
        rows = store.working_orders() if status == "working" else store.list_orders()
        return [plain(o.to_record()) for o in rows[-limit:]]

    @app.get("/pnl")
    def pnl() -> dict[str, Any]:
        return pnl_payload(store)

    @app.get("/audit/verify")
    def verify() -> dict[str, Any]:
        result = store.verify_audit()
        return {"ok": result.ok, "count": result.count, "head": result.head, "first_bad_seq": result.first_bad_seq,
                "reason": result.reason}

    @app.post("/kill", dependencies=[authorized])
    def kill(body: KillRequest) -> dict[str, Any]:
        record = store.set_trading_state(TradingState.HALTED, reason=body.reason, changed_by=body.by, at=dt.datetime.now(dt.UTC))
        return plain({"state": record.state, "reason": record.reason, "changed_by": record.changed_by,
                      **cancel_working(store, canceller)})

    @app.post("/resume", dependencies=[authorized])
    def resume(body: ResumeRequest) -> dict[str, Any]:
        reason = body.reason or f"resumed by {body.by}"
        record = store.set_trading_state(TradingState.ACTIVE, reason=reason, changed_by=body.by, at=dt.datetime.now(dt.UTC))
        return plain({"state": record.state, "reason": record.reason, "changed_by": record.changed_by})

    from trader.api_compliance import compliance_router

    app.include_router(compliance_router(guard=guard, archive_root=archive_root))
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alphaline")
    except PackageNotFoundError:
        return "unknown"


def cancel_working(store: TraderStore, canceller: Canceller | None) -> dict[str, Any]:
    """After a kill: cancel working orders at the venue, or say who will (shared by the API and ``trader kill``)."""
    if canceller is None:
        working = len(store.working_orders())
        return {"canceled": [], "note": f"{working} working orders: the run loop cancels them on its next cycle"}
    try:
        canceled = canceller()
    except BrokerError as exc:
        return {"canceled": [], "note": f"HALTED, but cancelling at the venue failed ({exc}); the run loop retries on its next cycle"}
    return {"canceled": list(canceled), "note": f"asked the venue to cancel {len(canceled)} working orders"}
