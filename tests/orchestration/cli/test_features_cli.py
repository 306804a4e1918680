"""``alphaline features`` through the real console entry: the catalogue, the online store, and clear errors."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from feature_repo import FEATURES, compute_features
from feature_repo import store as fs
from tests.features.synthetic_bars import BAR, feature_bars


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    code = "from orchestration.cli import run; run()"
    env = {"ALPHALINE_HOME": str(home), "PATH": str(Path(sys.executable).parent), "HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def test_features_describe_lists_every_feature_with_its_window_and_definition(tmp_path: Path):
    proc = _cli("features", "describe", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for spec in FEATURES.values():
        line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(spec.name + " "))
        assert f"{spec.window} {spec.unit}" in line and spec.definition in line
    assert f"{len(FEATURES)} features" in proc.stdout


def test_features_describe_with_an_unknown_family_names_the_option(tmp_path: Path):
    proc = _cli("features", "describe", "--family", "astro", home=tmp_path)
    assert proc.returncode == 2
    assert "--family" in proc.stderr and "'astro' is not a family" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_features_sample_before_any_features_prints_one_line_and_exits_2(tmp_path: Path):
    proc = _cli("features", "sample", home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "no features yet" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_features_build_before_any_bars_fails_with_one_clear_line(tmp_path: Path):
    proc = _cli("features", "build", home=tmp_path)
    assert proc.returncode == 1
    assert "marts.bars does not exist yet: ingest bars first" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def online_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose online store serves three symbols (AAA, BBB, CCC)."""
    home = tmp_path_factory.mktemp("online_home")
    features = compute_features(feature_bars(n_symbols=3, first=dt.date(2024, 6, 3), last=dt.date(2024, 6, 14)), bar_length=BAR)
    fs.write_features(features, fs.offline_dir(home))
    store = fs.open_store(home)
    fs.apply(store, fs.offline_dir(home), bar_length=BAR)
    fs.materialize(store, end=features["event_timestamp"].max() + dt.timedelta(seconds=1))
    return home


def test_features_online_prints_each_known_symbols_vector(online_home: Path):
    proc = _cli("features", "online", "aaa", "BBB", home=online_home)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "feature" in line)
    assert "AAA" in header and "BBB" in header and "CCC" not in header
    assert "ret_log_1" in proc.stdout and "ts_bar_ret" in proc.stdout


def test_features_online_with_an_unknown_symbol_prints_one_line_and_exits_2(online_home: Path):
    proc = _cli("features", "online", "NOPE", home=online_home)
    assert proc.returncode == 2
    assert proc.stderr == "error: features online: unknown symbol(s) NOPE (known: AAA, BBB, CCC; 3 symbols)\n"
    assert proc.stdout == ""


def test_features_online_with_a_mix_names_only_the_unknown_and_prints_no_table(online_home: Path):
    proc = _cli("features", "online", "AAA", "NOPE", "BBB", "ZZZ", home=online_home)
    assert proc.returncode == 2
    assert proc.stderr == "error: features online: unknown symbol(s) NOPE, ZZZ (known: AAA, BBB, CCC; 3 symbols)\n"
    assert proc.stdout == ""


def test_features_online_before_any_features_prints_one_line_and_exits_2(tmp_path: Path):
    proc = _cli("features", "online", "AAA", home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no features yet" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
