"""Resources per deployment, chosen in one place.

``local`` (default): synthetic market, DuckDB warehouse under ``ALPHALINE_HOME``.
``prod``: Alpaca historical bars (keys from the environment) into the same warehouse layout.
The servers profile (:mod:`orchestration.deployment`) puts the warehouse on PostgreSQL and points
dbt's ``postgres`` target at it; the resources read its URL from the environment, never from config.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from pydantic import Field

from orchestration.defs.compliance.resources import ComplianceResource
from orchestration.market.bars import BarSource, timeframe_delta
from orchestration.market.corporate_actions import ActionSource
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.settings import Settings
from orchestration.warehouse.resource import WarehouseResource

if TYPE_CHECKING:
    from feast import FeatureStore

    from feature_repo.offline_tables import OfflineTables
    from models.registry import Registry
    from models.training import TrainingConfig


class MarketSourceResource(dg.ConfigurableResource):
    """Where the scheduled ingestion gets its bars."""

    kind: Literal["synthetic", "alpaca"] = "synthetic"
    seed: int = 7
    n_symbols: int = 48
    n_sectors: int = 8
    origin: str = "2024-01-02"
    timeframe: str = "15m"
    faults: dict[str, int] = Field(default_factory=dict)
    alpaca_symbols: list[str] = Field(default_factory=list)
    alpaca_feed: str = "iex"
    alpaca_url: str | None = None
    #: synthetic only: plant the seeded split and dividend (SyntheticConfig.corporate_actions).
    corporate_actions: bool = False
    #: synthetic only: ``equities`` or ``crypto`` (24/7 pairs; ``ALPHALINE_MARKET`` sets the default).
    market: Literal["equities", "crypto"] = "equities"

    def source(self) -> BarSource:
        if self.kind == "alpaca" and any("/" in s for s in self.alpaca_symbols):
            return self._crypto_source()
        if self.kind == "alpaca":
            from orchestration.market.alpaca import AlpacaConfig, AlpacaSource

            return AlpacaSource(
                AlpacaConfig(symbols=tuple(self.alpaca_symbols), timeframe=self.timeframe, feed=self.alpaca_feed, url_override=self.alpaca_url)
            )
        return SyntheticMarket(
            SyntheticConfig(
                seed=self.seed, n_symbols=self.n_symbols, n_sectors=self.n_sectors,
                origin=dt.date.fromisoformat(self.origin), timeframe=self.timeframe, faults=dict(self.faults),
                corporate_actions=self.corporate_actions, market=self.market,
            )
        )

    def _crypto_source(self) -> BarSource:
        """Alpaca crypto bars (pairs like ``BTC/USD``); a list mixing pairs and stock tickers is refused."""
        from orchestration.errors import ConfigError
        from orchestration.market.alpaca_crypto import AlpacaCryptoConfig, AlpacaCryptoSource

        stocks = [s for s in self.alpaca_symbols if "/" not in s]
        if stocks:
            raise ConfigError(f"alpaca_symbols: {', '.join(stocks[:5])} are stocks beside crypto pairs; ingest them in separate runs")
        return AlpacaCryptoSource(AlpacaCryptoConfig(symbols=tuple(self.alpaca_symbols), timeframe=self.timeframe,
                                                     url_override=self.alpaca_url))

    def actions_source(self) -> ActionSource:
        """Where splits and dividends come from: Alpaca's corporate-actions API, or the synthetic market's plan."""
        if self.kind == "alpaca" and any("/" in s for s in self.alpaca_symbols):
            return self._crypto_source()  # crypto pairs have no splits or dividends: always none
        if self.kind == "alpaca":
            from orchestration.market.alpaca import AlpacaConfig
            from orchestration.market.alpaca_actions import AlpacaCorporateActions

            return AlpacaCorporateActions(AlpacaConfig(symbols=tuple(self.alpaca_symbols), timeframe=self.timeframe, url_override=self.alpaca_url))
        source = self.source()
        assert isinstance(source, SyntheticMarket)
        return source


class FeatureStoreResource(dg.ConfigurableResource):
    """The Feast repo (``feature_repo/``) with its state under ``home/feast``, and the timeframe it serves."""

    home: str
    config: Literal["local", "prod"] = "local"
    timeframe: str = "15m"

    @property
    def offline(self) -> Path:
        from feature_repo.store import offline_dir

        return offline_dir(Path(self.home))

    @property
    def bar_length(self) -> dt.timedelta:
        return timeframe_delta(self.timeframe)

    def store(self) -> FeatureStore:
        from feature_repo.store import open_store

        return open_store(Path(self.home), self.config)

    def tables(self) -> OfflineTables | None:
        """Feast's offline tables on PostgreSQL (prod config), written beside the Parquet files; ``None`` embedded."""
        from feature_repo.store import load_config, offline_tables

        return offline_tables(load_config(Path(self.home), self.config))


class ModelsResource(dg.ConfigurableResource):
    """Training settings of the daily retrain: learners, split, gate thresholds, backtest costs.

    Every field maps onto :class:`models.training.TrainingConfig`; ``config()`` validates
    them together (unknown learner families, impossible gates) before any work starts.
    """

    home: str
    label: str = "label_fwd_ret_4"
    target: str = Field(default="demeaned", description="What learners fit: raw, demeaned or rank (cross-sectional).")
    families: list[str] = Field(default_factory=lambda: ["sklearn_ridge", "sklearn_hgb", "xgboost", "lightgbm", "torch_mlp", "torch_tcn"])
    n_folds: int = 4
    train_sessions: int | None = Field(default=None, description="Train on the last N sessions only (None: all history).")
    holdout_sessions: int = Field(default=0, ge=0, description="Leave the newest N sessions out of training (e.g. to trade them).")
    max_train: int | None = Field(default=None, description="Rolling window of at most this many timestamps (None: expanding).")
    sentinel_family: str = "xgboost"
    min_oos_ic: float = 0.01
    min_oos_icir: float = 0.05
    max_overfit_ratio: float = 4.0
    sentinel_max_abs_ic: float = 0.01
    sentinel_max_abs_t: float = 3.0
    min_backtest_sharpe: float = 0.0
    max_drawdown: float = -0.30
    min_oos_timestamps: int = 200
    commission_bps: float = 0.5
    half_spread_bps: float = 1.0
    impact_coef: float = 0.1
    financing_rate: float = Field(default=0.06, description="Backtest: annual rate on borrowed cash.")
    borrow_fee: float = Field(default=0.0025, description="Backtest: annual fee on the short book's value.")
    backtest_optimizer: str = Field(default="none", description="Backtest book weights: none (equal), or the trader's "
                                    "optimiser: hrp or mvo (trader.optimizer, skfolio), as sizing.optimizer in trader.yaml.")
    learner_params: dict[str, dict[str, float]] = Field(default_factory=dict)
    use_searched_params: bool = Field(default=True, description="Start from the learner_search job's best parameters "
                                      "(models/search/best_params.json); learner_params still win.")
    search_families: list[str] = Field(default_factory=lambda: ["lightgbm", "xgboost"], description="What learner_search tunes.")
    search_trials: int = Field(default=8, ge=1, description="Optuna trials per family and search run (the study resumes).")
    cpcv: bool = Field(default=False, description="model_evaluation also runs combinatorial purged CV of the learners "
                       "(models.cpcv): path Sharpe/IC per learner and PBO across them, in the tear sheet. Minutes, not seconds.")
    cpcv_families: list[str] | None = Field(default=None, description="Learners CPCV fits (None: the run's row-wise ones: "
                                            "ridge, HistGB, XGBoost, LightGBM; name torch_mlp/torch_tcn to add them).")
    cpcv_groups: int = Field(default=6, ge=3, description="CPCV time groups (6 with 2 tested: 15 splits, 5 paths).")
    cpcv_test_groups: int = Field(default=2, ge=1, description="CPCV groups tested per split.")

    @property
    def workdir(self) -> Path:
        return Path(self.home) / "models" / "latest"

    @property
    def search_dir(self) -> Path:
        return Path(self.home) / "models" / "search"

    def _params(self) -> dict[str, dict[str, float]]:
        from models.search import read_best

        searched = read_best(self.search_dir / "best_params.json") if self.use_searched_params else {}
        families = set(searched) | set(self.learner_params)
        return {f: {**searched.get(f, {}), **self.learner_params.get(f, {})} for f in families}

    def config(self, periods_per_year: int) -> TrainingConfig:
        from models.training import TrainingConfig

        return TrainingConfig.model_validate({
            "walk_forward": {"label": self.label, "target": self.target, "families": tuple(self.families), "n_folds": self.n_folds,
                             "max_train": self.max_train, "params": self._params()},
            "gates": {k: getattr(self, k) for k in ("min_oos_ic", "min_oos_icir", "max_overfit_ratio", "sentinel_max_abs_ic", "sentinel_max_abs_t",
                                                     "min_backtest_sharpe", "max_drawdown", "min_oos_timestamps")},
            "backtest": {"commission_bps": self.commission_bps, "half_spread_bps": self.half_spread_bps, "impact_coef": self.impact_coef,
                         "financing_rate": self.financing_rate, "borrow_fee": self.borrow_fee, "periods_per_year": periods_per_year},
            "sentinel_family": self.sentinel_family, "periods_per_year": periods_per_year,
        })

    def registry(self) -> Registry:
        from models.registry import Registry

        return Registry(Path(self.home))


class DataQualityResource(dg.ConfigurableResource):
    """Thresholds of the blocking data checks and where their reports go."""

    max_reject_share: float = 0.01
    reports_dir: str


class TradingResource(dg.ConfigurableResource):
    """Where the prediction service answers and where the trader keeps its state (both only read).

    Example:
        >>> TradingResource.for_home(Path("/tmp/home"), mode="sim").store_url
        'sqlite:////tmp/home/trader/sim.db'
    """

    service_url: str = Field(default="http://127.0.0.1:3001", description="The BentoML prediction service (`make serve`).")
    store_url: str = Field(description="SQLAlchemy URL of the trader's state store.")
    mode: str = Field(default="live", description="The trader mode whose store this is (live, paper, sim, dry-run).")
    timeout_s: float = Field(default=3.0, gt=0, description="How long to wait for the service's GET /model.")

    @classmethod
    def for_home(cls, home: Path, *, mode: str = "live", **overrides: object) -> TradingResource:
        """The mode's store under ``home/trader/`` (live: ``trader.db``, others ``<mode>.db``, as ``trader`` keeps them)."""
        from trader.servers import server_store_url

        name = "trader.db" if mode == "live" else f"{mode}.db"
        url = server_store_url(mode) or f"sqlite:///{Path(home) / 'trader' / name}"  # the servers profile: on PostgreSQL
        return cls(**{"store_url": url, "mode": mode, **overrides})

    def live_model_version(self) -> str | None:
        """The ``model_version`` the service reports on ``GET /model``; None when it does not answer."""
        import httpx

        try:
            answer = httpx.get(self.service_url.rstrip("/") + "/model", timeout=self.timeout_s)
            return str(answer.json()["model_version"]) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def store_problem(self) -> str | None:
        """Why the store cannot be read (a missing SQLite file: the trader has not run in this mode), else None."""
        from trader.store import sqlite_file

        path = sqlite_file(self.store_url)
        if path is not None and not path.exists():
            return (f"no trader store at {path}: the trader has not run in {self.mode} mode here "
                    "(the demo trades in sim: ALPHALINE_TRADER_MODE=sim)")
        return None


def build_resources(settings: Settings, dbt_project: DbtProject) -> dict[str, object]:
    from orchestration.deployment import WAREHOUSE_URL_VAR, servers

    if settings.deployment == "prod":
        market = MarketSourceResource(
            kind="alpaca", alpaca_symbols=[s for s in settings.alpaca_symbols.split(",") if s], origin=settings.market_start.isoformat()
        )
    else:
        market = MarketSourceResource(origin=settings.market_start.isoformat(), market=settings.market)
    trading = TradingResource.for_home(settings.home, mode=settings.trader_mode)
    on_servers = servers(settings) is not None  # the warehouse on PostgreSQL, its URL in the environment (configure)
    return {
        "market": market,
        "warehouse": WarehouseResource(location=dg.EnvVar(WAREHOUSE_URL_VAR) if on_servers else str(settings.warehouse_path)),
        "dbt": DbtCliResource(project_dir=dbt_project, target="postgres" if on_servers else None),
        "features": FeatureStoreResource(home=str(settings.home), config=settings.feast_config, timeframe=settings.feature_timeframe),
        "models": ModelsResource(home=str(settings.home)),
        # One setting picks whose store both the trader assets and the EOD compliance run read.
        "compliance": ComplianceResource.for_home(settings.home, store_url=trading.store_url, mode=settings.trader_mode),
        "trading": trading,
        "quality": DataQualityResource(max_reject_share=settings.max_reject_share, reports_dir=str(settings.reports_dir)),
    }
