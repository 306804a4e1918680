"""``serving_deployment``: the production ensemble in the model store, and whether the service answers with it.

The BentoML service loads the production ensemble when it starts (and on ``POST /reload``),
so "what is live" is two facts that can disagree: the registry's production tag, and the
``model_version`` the running service reports on ``GET /model``. The asset records both and
says when they differ (a promotion the service has not picked up yet). A service that does
not answer is recorded as such, not as a failure: the deployment is a fact to look at.
"""


import dagster as dg

from orchestration.defs.training.metadata import rounded
from orchestration.resources import ModelsResource, TradingResource

GROUP = "serving"
SERVING_DEPLOYMENT = dg.AssetKey("serving_deployment")


@dg.asset(group_name=GROUP, deps=[dg.AssetKey("production_model")], kinds={"bentoml"})
def serving_deployment(context: dg.AssetExecutionContext, models: ModelsResource, trading: TradingResource) -> dg.MaterializeResult:
    """The production ensemble (tag, members, weights, out-of-sample IC) and the version the prediction service
    at ``trading.service_url`` answers ``GET /model`` with."""
    registry = models.registry()
    production = registry.production()
    meta: dict[str, object] = {"production": production or "none", "service_url": dg.MetadataValue.url(trading.service_url)}
    if production is not None:
        info = registry.info(production)["metadata"]
        weights = info.get("weights") or {}
        oos = info.get("oos_metrics") or {}
        rows = ["| member | tag | weight | OOS IC |", "|---|---|---:|---:|"]
        rows += [f"| {family} | {tag} | {weights.get(family, 0.0):.2f} | {oos.get(family, {}).get('ic', float('nan')):.4f} |"
                 for family, tag in sorted((info.get("members") or {}).items())]
        meta |= {"members": dg.MetadataValue.md("\n".join(rows)), "oos_ic": rounded(oos.get("ensemble", {}).get("ic")),
                 "training_window": dg.MetadataValue.json(info.get("training_window") or {}),
                 "code_version": str(info.get("code_version", ""))}
    live = trading.live_model_version()
    meta["live_version"] = live or "no answer"
    if live is None:
        meta["status"] = f"the service at {trading.service_url} did not answer GET /model (start it with `make serve`)"
    elif live == production:
        meta["status"] = f"serving the production model {production}"
    else:
        meta["status"] = f"serving {live}, but production is {production}: restart the service or POST /reload"
    context.log.info(str(meta["status"]))
    meta["live_is_production"] = live is not None and live == production
    return dg.MaterializeResult(metadata=meta)
