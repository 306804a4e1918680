"""``alphaline features`` through the real console entry: the catalogue, and clear errors before any data."""

import subprocess
import sys
from pathlib import Path

from feature_repo import FEATURES


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
    assert "40 features" in proc.stdout


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
