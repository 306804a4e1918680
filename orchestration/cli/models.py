"""``alphaline models``: train, list, inspect, promote and roll back models in the BentoML store.

Examples::

    alphaline models train                     # run training_job (walk-forward CV, gates, candidate, promotion)
    alphaline models list                      # every ensemble and member with its stage
    alphaline models list --stage production
    alphaline models show alphaline_ensemble:latest
    alphaline models promote alphaline_ensemble:abc123   # refused unless its gates passed and it beats production
    alphaline models rollback                  # production → archived; the previous production is restored
"""

from __future__ import annotations

import json
import math
from typing import Any

import click

from orchestration.errors import ConfigError
from orchestration.runner import run_job
from orchestration.settings import Settings, prepare_environment


def _registry():
    from models.registry import Registry

    return Registry(prepare_environment(Settings()).home)


def _num(value: Any, digits: int = 4) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


@click.group()
def models() -> None:
    """The model registry (BentoML model store under ALPHALINE_HOME/bentoml)."""


@models.command()
@click.option("--cpcv", is_flag=True, help="Also run combinatorial purged CV of the learners (path Sharpe/IC, PBO) into the tear sheet.")
@click.option("--cpcv-family", "cpcv_families", multiple=True, help="Learner CPCV fits (repeatable; default: the row-wise ones).")
def train(cpcv: bool, cpcv_families: tuple[str, ...]) -> None:
    """Retrain now (what the daily schedule runs) and print the result."""
    settings = prepare_environment(Settings())
    from orchestration.defs.training.schedules import TRAINING_JOB

    config: dict[str, Any] = {"home": str(settings.home), "cpcv": True} if cpcv or cpcv_families else {}
    if cpcv_families:
        config["cpcv_families"] = list(cpcv_families)
    run_job(TRAINING_JOB, run_config={"resources": {"models": {"config": config}}} if config else None)
    print_summary(settings)


@models.command()
@click.option("--family", "families", multiple=True, help="Learner family to tune (repeatable; default: lightgbm, xgboost).")
@click.option("--trials", type=click.IntRange(1, 1000), default=8, show_default=True, help="More Optuna trials per family.")
def search(families: tuple[str, ...], trials: int) -> None:
    """Tune learner parameters on the purged walk-forward CV (Optuna); the next retrain starts from the best."""
    settings = prepare_environment(Settings())
    from models.search import SPACES
    from orchestration.defs.training.search import SEARCH_JOB

    unknown = [f for f in families if f not in SPACES]
    if unknown:
        raise ConfigError(f"--family {', '.join(unknown)}: no search space; searchable: {', '.join(sorted(SPACES))}")
    config: dict[str, Any] = {"home": str(settings.home), "search_trials": trials}
    if families:
        config["search_families"] = list(families)
    run_job(SEARCH_JOB, run_config={"resources": {"models": {"config": config}}})
    from models.search import read_best, read_rigour

    best_path = settings.home / "models" / "search" / "best_params.json"
    rigour = read_rigour(best_path)
    for family, params in read_best(best_path).items():
        click.echo(f"  best {family:<14} {params}")
        r = rigour.get(family, {})
        if "dsr" in r:
            click.echo(f"       {'':<14} best of {r['n_trials']} trials on this frame: Sharpe {r['sharpe']:.2f} (gross), "
                       f"deflated Sharpe ratio {r['dsr']:.2f}, PBO {r.get('pbo', float('nan')):.2f}")


@models.command(name="list")
@click.option("--stage", type=click.Choice(["candidate", "production", "archived"]), help="Only this stage.")
@click.option("--members/--no-members", default=False, show_default=True, help="Also list member learners.")
def list_models(stage: str | None, members: bool) -> None:
    """Ensembles (and optionally members), oldest first, with stage and out-of-sample IC."""
    registry = _registry()
    rows = registry.list(stage=stage, role=None if members else "ensemble")
    if not rows:
        click.echo("no models yet (run `alphaline models train` or `make demo`)")
        return
    click.echo(f"{'tag':<42} {'stage':<11} {'family':<14} {'oos ic':>8} {'gates':>6}  created")
    for row in rows:
        meta = registry.info(row["tag"])["metadata"]
        ic = (meta.get("oos_metrics") or {}).get("ensemble" if row["labels"].get("role") == "ensemble" else row["labels"].get("family"), {})
        gates = "pass" if meta.get("gates_passed") else "FAIL"
        click.echo(f"{row['tag']:<42} {row['labels'].get('stage', ''):<11} {row['labels'].get('family', ''):<14} "
                   f"{_num(ic.get('ic')):>8} {gates:>6}  {row['created']:%Y-%m-%d %H:%M}")


@models.command()
@click.argument("tag")
@click.option("--json", "as_json", is_flag=True, help="The full labels and metadata as JSON.")
def show(tag: str, as_json: bool) -> None:
    """One model's card: labels, window, metrics, gates, members."""
    info = _registry().info(tag)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    meta, labels = info["metadata"], info["labels"]
    click.echo(f"{info['tag']}  stage={labels.get('stage')}  family={labels.get('family')}")
    window = meta.get("training_window", {})
    click.echo(f"  label {meta.get('label')}; trained on {window.get('start')} .. {window.get('end')} ({window.get('rows')} rows)")
    click.echo(f"  data fingerprint {str(meta.get('data_fingerprint', ''))[:16]}…  code {meta.get('code_version')}")
    for name, m in (meta.get("oos_metrics") or {}).items():
        click.echo(f"  {name:<14} IC {_num(m.get('ic'))}  rank IC {_num(m.get('rank_ic'))}  ICIR {_num(m.get('icir'), 3)}  "
                   f"hit {_num(m.get('hit_rate'), 3)}  oracle {_num(m.get('oracle_fraction'), 2)}")
    for gate in meta.get("gates") or []:
        click.echo(f"  gate {gate['name']:<20} {'pass' if gate['passed'] else 'FAIL'}  {_num(gate['value'])}  ({gate['description']})")
    for family, member in (meta.get("members") or {}).items():
        click.echo(f"  member {family:<14} {member}  weight {_num((meta.get('weights') or {}).get(family), 3)}")


@models.command()
@click.argument("tag")
def promote(tag: str) -> None:
    """Make TAG production: only if its gates passed and it beats production on their common OOS window."""
    registry = _registry()
    comparison = registry.promote(tag, by="cli")
    if comparison is None:
        click.echo(f"{tag} is now production (there was no production model)")
    else:
        click.echo(f"{tag} is now production: IC {comparison.challenger_ic:.4f} vs {comparison.champion_ic:.4f} "
                   f"over {comparison.timestamps} common out-of-sample timestamps")


@models.command()
def rollback() -> None:
    """Archive the production ensemble and restore the previous one."""
    restored = _registry().rollback(by="cli")
    click.echo(f"rolled back: {restored} is production again")


def print_summary(settings: Settings) -> None:
    """What the demo prints after training: OOS signal quality, backtest, gates, registry state."""
    from models.registry import Registry

    registry = Registry(settings.home)
    rows = registry.list(role="ensemble")
    if not rows:
        click.echo("\nModels: none registered (a gate failed? see the training_job run in the Dagster UI)")
        return
    info = registry.info(rows[-1]["tag"])
    meta = info["metadata"]
    ens, bt = meta["oos_metrics"]["ensemble"], meta["backtest"]
    click.echo("\nModels (out of sample, purged walk-forward)")
    for name, m in meta["oos_metrics"].items():
        click.echo(f"  {name:<14} IC {_num(m.get('ic'))}  rank IC {_num(m.get('rank_ic'))}  ICIR {_num(m.get('icir'), 3)}  "
                   f"hit {_num(m.get('hit_rate'), 3)}  of oracle {_num(m.get('oracle_fraction'), 2)}")
    click.echo(f"  oracle IC {_num(meta.get('oracle_ic'))}; ensemble reaches {_num(ens.get('oracle_fraction'), 2)} of it; "
               f"sentinel (shuffled labels) IC {_num(meta.get('sentinel_ic'))}")
    click.echo(f"  backtest after costs: Sharpe {_num(bt.get('sharpe_ratio'), 2)}, max drawdown {_num(bt.get('max_drawdown'), 3)}, "
               f"turnover {_num(bt.get('turnover'), 3)}/bar, annual return {_num(bt.get('annual_return'), 3)}")
    if meta.get("ensemble_choice"):
        click.echo(f"  production ensemble: {meta['ensemble_choice']}")
    for line in meta.get("warnings") or []:
        click.secho(f"  warning: {line}", fg="yellow")
    if meta.get("tearsheet"):
        click.echo(f"  tear sheet {meta['tearsheet']}")
    failed = [g["name"] for g in meta.get("gates") or [] if not g["passed"]]
    click.echo(f"  gates: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")
    click.echo(f"  latest ensemble {info['tag']} ({info['labels'].get('stage')}); production: {registry.production() or 'none'}")


def latest_tearsheet(settings: Settings) -> str | None:
    """The tear sheet of the newest registered ensemble (``summary.md``), if any."""
    from models.registry import Registry

    registry = Registry(settings.home)
    rows = registry.list(role="ensemble")
    return registry.info(rows[-1]["tag"])["metadata"].get("tearsheet") if rows else None
