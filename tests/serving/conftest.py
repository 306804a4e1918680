"""Fixtures of the serving tests: one small Alphaline home per session, the service module imported over it,
and one in-process client (the service's ASGI app under Starlette's TestClient)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from tests.serving.serving_world import World, build_world, in_process

#: Small request limits so that the size checks are cheap to reach.
LIMITS = {"ALPHALINE_SERVING_MAX_SYMBOLS": "10", "ALPHALINE_SERVING_MAX_ROWS": "10"}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("serving_home"))


@pytest.fixture(scope="session")
def service(world: World) -> ModuleType:
    """``serving.service``, imported while the model store is the world's (its model references resolve then)."""
    import importlib

    with in_process(world.home):
        return importlib.import_module("serving.service")


@pytest.fixture(scope="session")
def client(world: World, service: ModuleType) -> Iterator[TestClient]:
    """One in-process app per session: BentoML registers its Prometheus metrics once per process and app."""
    with in_process(world.home, **LIMITS):
        c = TestClient(service.Ensemble.to_asgi())
        c.__enter__()  # start-up reads the environment; requests afterwards do not, so it is restored at once
    try:
        yield c
    finally:
        c.__exit__(None, None, None)
