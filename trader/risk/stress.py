"""Stress scenarios and portfolio risk of the current book, as a report (``trader risk``).

Scenarios (P&L in currency, ``Decimal`` to the cent, and as a fraction of equity):

* **market shock** — every name moves by ``market_shock`` (−5 % by default) in one bar; and the
  same shock scaled by each name's beta to the equal-weight universe over the history window;
* **sector shock** — each sector held moves by ``sector_shock`` (−10 %) on its own; the worst is flagged;
* **volatility ×k** — VaR and CVaR (historical and parametric) with every return scaled by ``k``
  (3 by default): both scale by ``k`` exactly, so the report shows how far that is from the limits.

Liquidity lists each position as a share of its average daily volume and the sessions needed to
exit at ``risk.max_adv_pct`` of ADV per session. Nothing here trades or writes.

Example:
    >>> from decimal import Decimal as D
    >>> report = stress_report({"AAA": D(100), "BBB": D(-25)}, prices={"AAA": D(10), "BBB": D(20)}, equity=D(10_000),
    ...                        snapshot=None, sectors={"AAA": "tech", "BBB": "fin"})
    >>> [(s.name, s.pnl, s.pct_equity) for s in report.scenarios]
    [('market -5% in a bar (every name)', Decimal('-25.00'), Decimal('-0.0025')), ('sector fin -10%', Decimal('50.00'), Decimal('0.0050')), ('sector tech -10%', Decimal('-100.00'), Decimal('-0.0100'))]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from trader.config import RiskLimits
from trader.domain import Symbol
from trader.risk.portfolio import NoHistory, book_var

if TYPE_CHECKING:
    from trader.history import MarketSnapshot

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Scenario:
    name: str
    pnl: Decimal
    pct_equity: Decimal


@dataclass(frozen=True)
class StressReport:
    equity: Decimal
    gross: Decimal
    net: Decimal
    scenarios: list[Scenario]
    var: dict[str, Any] = field(default_factory=dict)
    liquidity: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"equity {self.equity:.2f}  gross {self.gross:.2f} ({self.gross / self.equity:.2%})  "
               f"net {self.net:.2f} ({self.net / self.equity:.2%})", "", "stress scenarios"]
        width = max((len(s.name) for s in self.scenarios), default=10)
        out += [f"  {s.name:<{width}}  {s.pnl:>14.2f}  {s.pct_equity:>8.2%}" for s in self.scenarios]
        if self.var:
            out += ["", f"VaR / CVaR at {self.var['confidence']:.0%} over {self.var['horizon_bars']} bars ({self.var['observations']} bars of history)"]
            for label, row in self.var["rows"].items():
                out.append(f"  {label:<24}  VaR {row['var']:>12.2f} ({row['var_pct']:.2%})  CVaR {row['cvar']:>12.2f} ({row['cvar_pct']:.2%})")
        if self.liquidity:
            out += ["", "liquidity"]
            out += [f"  {r['symbol']:<8} {r['qty']:>10}  ADV {r['adv']:>12}  {r['pct_adv']:>8}  {r['sessions_to_exit']}" for r in self.liquidity]
        return out + (["", *self.notes] if self.notes else [])

    def to_record(self) -> dict[str, Any]:
        """JSON-ready (money as strings)."""
        var = {**self.var, "rows": {k: {n: str(x) for n, x in r.items()} for k, r in self.var.get("rows", {}).items()}}
        return {"equity": str(self.equity), "gross": str(self.gross), "net": str(self.net),
                "scenarios": [{"name": s.name, "pnl": str(s.pnl), "pct_equity": str(s.pct_equity)} for s in self.scenarios],
                "var": var if self.var else {}, "liquidity": self.liquidity, "notes": self.notes}


def _money(x: Decimal | float) -> Decimal:
    return (x if isinstance(x, Decimal) else Decimal(repr(float(x)))).quantize(_CENT) + 0  # + 0: no "-0.00"


def stress_report(positions: Mapping[Symbol, Decimal], *, prices: Mapping[Symbol, Decimal], equity: Decimal,
                  snapshot: MarketSnapshot | None, sectors: Mapping[str, str], limits: RiskLimits | None = None,
                  market_shock: Decimal = Decimal("-0.05"), sector_shock: Decimal = Decimal("-0.10"),
                  vol_multiplier: Decimal = Decimal(3)) -> StressReport:
    """The report for signed ``positions`` valued at ``prices`` (see the module docstring)."""
    limits = limits or RiskLimits()
    value = {s: q * prices[s] for s, q in positions.items() if q}
    notes: list[str] = []

    def scenario(name: str, pnl: Decimal) -> Scenario:
        pnl = _money(pnl)
        return Scenario(name, pnl, (pnl / equity).quantize(Decimal("0.0001")))

    shock_pct = f"{market_shock:+.0%}".replace("+", "")
    rows = [scenario(f"market {shock_pct} in a bar (every name)", sum(value.values(), Decimal(0)) * market_shock)]
    for sector in sorted({sectors.get(s, "(no sector)") for s in value}):
        hit = sum((x for s, x in value.items() if sectors.get(s, "(no sector)") == sector), Decimal(0))
        rows.append(scenario(f"sector {sector} {sector_shock:+.0%}".replace("+", ""), hit * sector_shock))
    try:
        betas = _betas(snapshot, sorted(value))
        rows.insert(1, scenario(f"market {shock_pct} in a bar (beta-scaled)",
                                sum((x * Decimal(repr(round(betas[s], 6))) for s, x in value.items()), Decimal(0)) * market_shock))
    except NoHistory as exc:
        notes.append(f"beta-scaled shock and VaR unavailable: {exc}")
    var = _var_rows(snapshot, value, equity, limits, vol_multiplier, notes) if value else {}
    gross = sum((abs(x) for x in value.values()), Decimal(0))
    net = sum(value.values(), Decimal(0))
    return StressReport(equity=equity, gross=_money(gross), net=_money(net), scenarios=rows, var=var,
                        liquidity=_liquidity(positions, snapshot, limits), notes=notes)


def _betas(snapshot: MarketSnapshot | None, names: list[Symbol]) -> dict[Symbol, float]:
    import numpy as np

    if not names:
        return {}
    if snapshot is None:
        raise NoHistory("no market history")
    universe = snapshot.window(list(snapshot.symbols))
    if universe.shape[0] < snapshot.min_observations:
        raise NoHistory(f"{universe.shape[0]} complete bars of history, fewer than {snapshot.min_observations}")
    market = universe.mean(axis=1)
    var = float(np.var(market, ddof=1))
    index = {s: i for i, s in enumerate(snapshot.symbols)}
    return {s: float(np.cov(universe[:, index[s]], market, ddof=1)[0, 1] / var) if var > 0 else 1.0 for s in names}


def _var_rows(snapshot: MarketSnapshot | None, value: Mapping[Symbol, Decimal], equity: Decimal, limits: RiskLimits,
              k: Decimal, notes: list[str]) -> dict[str, Any]:
    exposures = {s: float(x) for s, x in value.items()}
    conf, horizon = float(limits.var_confidence), limits.var_horizon_bars
    rows: dict[str, dict[str, Decimal]] = {}
    try:
        for method in ("historical", "parametric"):
            var, cvar = book_var(snapshot, exposures, method=method, confidence=conf, horizon_bars=horizon)
            for label, scale in ((method, 1.0), (f"{method}, vol x{k}", float(k))):
                v, c = _money(var * scale), _money(cvar * scale)
                rows[label] = {"var": v, "cvar": c, "var_pct": v / equity, "cvar_pct": c / equity}
    except NoHistory as exc:
        notes.append(f"VaR unavailable: {exc}")
        return {}
    for label, row in rows.items():
        for key, cap in (("var_pct", limits.max_var_pct), ("cvar_pct", limits.max_cvar_pct)):
            if cap is not None and row[key] > cap:
                notes.append(f"{label}: {key.split('_')[0].upper()} {row[key]:.2%} of equity is over the limit {cap:.2%}")
    observations = snapshot.window(sorted(value)).shape[0] if snapshot is not None else 0
    return {"confidence": conf, "horizon_bars": horizon, "observations": observations,
            "rows": rows}


def _liquidity(positions: Mapping[Symbol, Decimal], snapshot: MarketSnapshot | None,
               limits: RiskLimits) -> list[dict[str, Any]]:
    out = []
    for s, q in sorted(positions.items()):
        if not q:
            continue
        adv = snapshot.adv.get(s) if snapshot is not None else None
        share = abs(q) / adv if adv else None
        exit_days = (share / limits.max_adv_pct).quantize(Decimal("0.01")) if share is not None and limits.max_adv_pct else None
        out.append({"symbol": s, "qty": str(q), "adv": f"{adv:.0f}" if adv else "n/a",
                    "pct_adv": f"{share:.2%}" if share is not None else "n/a",
                    "sessions_to_exit": f"{exit_days} sessions to exit at {limits.max_adv_pct:.0%} of ADV" if exit_days is not None else ""})
    return out
