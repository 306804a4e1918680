from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from trader.config import Mode, Secrets, load_config
from trader.errors import TraderConfigError

GOOD = """\
mode: paper
universe:
  symbols: [AAA, BBB, CCC]
  sectors: {tech: [AAA, BBB], energy: [CCC]}
risk:
  max_position_pct: 0.10
  max_notional_per_order: 25000.50
  max_prediction_age: 900
  restricted_symbols: [BBB]
  drawdown:
    tiers: [{at: 0.05, size_multiplier: 0.75}, {at: 0.10, size_multiplier: 0.5}]
    flatten_and_halt_at: 0.15
sizing: {mode: long_only, k: 2, fractional: true}
prediction: {url: "http://127.0.0.1:3000", timeout_s: 2}
"""


def write(tmp_path, text: str):
    path = tmp_path / "trader.yaml"
    path.write_text(text)
    return path


def test_config_loads_a_valid_file_into_typed_values(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.mode is Mode.PAPER
    assert cfg.risk.max_position_pct == D("0.10") and cfg.risk.max_notional_per_order == D("25000.50")
    assert cfg.risk.max_prediction_age == dt.timedelta(minutes=15)
    assert cfg.risk.restricted_symbols == frozenset({"BBB"})
    assert cfg.universe.sector_map() == {"AAA": "tech", "BBB": "tech", "CCC": "energy"}
    assert cfg.sizing.k == 2 and cfg.sizing.fractional


@pytest.mark.parametrize(("text", "field", "reason"), [
    ("universe: {symbols: [AAA]}\nrisk: {max_postion_pct: 0.1}\n", "risk.max_postion_pct", "Extra inputs are not permitted"),
    ("universe: {symbols: [AAA]}\nrisk: {max_position_pct: 2}\n", "risk.max_position_pct", "less than or equal to 1"),
    ("universe: {symbols: [aaa]}\n", "universe.symbols.0", "should match pattern"),
    ("universe: {symbols: [AAA]}\nmode: yolo\n", "mode", "Input should be"),
    ("universe: {symbols: [AAA], sectors: {tech: [ZZZ]}}\n", "universe", "ZZZ, which is not in symbols"),
    ("universe: {symbols: [AAA]}\nalpaca_api_key: PK123\n", "alpaca_api_key", "Extra inputs"),
    ("risk: {}\n", "universe", "Field required"),
    ("universe: {symbols: [AAA]}\nrisk: {drawdown: {tiers: [{at: 0.1, size_multiplier: 0.5}, {at: 0.05, size_multiplier: 0.75}]}}\n",
     "risk.drawdown", "strictly increasing"),
])
def test_config_error_is_one_line_naming_file_field_and_reason(tmp_path, text, field, reason):
    with pytest.raises(TraderConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "trader.yaml"))
    assert err.value.field == field and reason in err.value.reason


def test_config_error_for_sector_limit_with_symbols_missing_a_sector(tmp_path):
    with pytest.raises(TraderConfigError, match="BBB have no sector"):
        load_config(write(tmp_path, "universe: {symbols: [AAA, BBB], sectors: {tech: [AAA]}}\n"))


def test_config_error_for_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(TraderConfigError, match="line 2: not valid YAML"):
        load_config(write(tmp_path, "mode: sim\nrisk: max: 1\n"))


def test_config_error_for_a_missing_file(tmp_path):
    with pytest.raises(TraderConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_come_from_the_environment_and_never_show_in_repr():
    secrets = Secrets.from_env({"ALPACA_API_KEY": "PKREALKEY1", "ALPACA_SECRET_KEY": "very-secret-value",
                                "TRADER_API_TOKEN": "tok-123456"})
    text = repr(secrets) + str(secrets) + secrets.model_dump_json()
    assert "very-secret-value" not in text and "PKREALKEY1" not in text and "tok-123456" not in text
    _key, secret = secrets.require_alpaca(Mode.PAPER)
    assert secret.get_secret_value() == "very-secret-value"


def test_secrets_refuse_a_placeholder():
    with pytest.raises(TraderConfigError, match="ALPACA_SECRET_KEY: looks like a placeholder"):
        Secrets.from_env({"ALPACA_API_KEY": "PKREALKEY1", "ALPACA_SECRET_KEY": "changeme"})


def test_secrets_missing_alpaca_key_names_the_variable_and_the_mode():
    with pytest.raises(TraderConfigError, match="environment: ALPACA_API_KEY: not set; --mode live"):
        Secrets.from_env({}).require_alpaca(Mode.LIVE)


def test_the_examples_in_the_config_module_docstrings_run():
    import doctest

    import trader.config

    result = doctest.testmod(trader.config)
    assert result.failed == 0 and result.attempted > 0
