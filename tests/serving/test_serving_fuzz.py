"""A schemathesis pass over the service's own OpenAPI schema (``/docs.json``): no input a client can send gives a 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

EXAMPLES = 25  # per operation and mode: enough to cross every validator, small enough for a 2-core box
OPERATIONS = {"POST /predict", "POST /predict_rows", "GET /model", "POST /reload"}


@pytest.fixture(scope="module")
def schema(client):
    return schemathesis.openapi.from_dict(client.get("/docs.json").json())


def _send(client, case):
    """The case through the session's in-process client (one app per process: BentoML's metrics register once)."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url))
    body = kw.get("data")
    if "json" in kw:
        body = json.dumps(kw["json"])
    if isinstance(body, str):
        body = body.encode()
    return client.request(kw["method"], kw["url"], headers=kw.get("headers"), params=kw.get("params"), content=body)


def _fuzz(client, operation, mode: GenerationMode, failures: list[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def probe(case) -> None:
        response = _send(client, case)
        if response.status_code >= 500:
            failures.append(f"{operation.label} {case.body!r:.200} -> {response.status_code} {response.text[:200]}")

    try:
        probe()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # GET /model takes no input: nothing to get wrong


def test_openapi_schema_lists_the_contract_endpoints(schema):
    found = {op.ok().label for op in schema.get_all_operations()}
    assert OPERATIONS <= found, found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error(client, schema, mode):
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in OPERATIONS:  # BentoML's own probes and metrics take no input
            _fuzz(client, operation, mode, failures)
    assert not failures, "\n".join(failures[:5])
