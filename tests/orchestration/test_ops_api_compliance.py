"""The ops API's /compliance endpoints on a home sealed by the EOD run: auth, content from the archive, proofs that verify."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from test_compliance_pipeline import MON, TUE
from test_compliance_tamper import home, template  # noqa: F401 (fixtures)

from trader.api import create_app
from trader.compliance.merkle import verify_inclusion
from trader.store import TraderStore

TOKEN = "tok-compliance-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDPOINTS = ("/compliance/tax/2024/form-8949", "/compliance/tax/2024/schedule-d", "/compliance/tax/2024/tax-lots",
             "/compliance/archive/2024-03-05", "/compliance/archive/2024-03-05/form_8949.csv")


@pytest.fixture
def client(home):  # noqa: F811
    with TraderStore(f"sqlite:///{home / 'trader' / 'trader.db'}") as store, \
            TestClient(create_app(store=store, token=SecretStr(TOKEN), archive_root=home / "archive")) as c:
        yield c


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("path", ENDPOINTS)
def test_compliance_api_without_a_token_is_401_and_with_a_wrong_one_403(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403


def test_compliance_api_form_8949_schedule_d_and_lots_are_the_years_last_sealed_reports(client, home):  # noqa: F811
    sealed = home / "reports" / TUE.isoformat()
    form = client.get("/compliance/tax/2024/form-8949", headers=AUTH).json()
    assert form["as_of"] == "2024-03-05" and form["rows"] == csv_rows((sealed / "form_8949.csv").read_text())
    assert {r["a_description"] for r in form["rows"]} == {"4 sh AAA", "5 sh BBB"}
    schedule = client.get("/compliance/tax/2024/schedule-d", headers=AUTH).json()["rows"]
    assert schedule == csv_rows((sealed / "schedule_d.csv").read_text())
    lots = client.get("/compliance/tax/2024/tax-lots", headers=AUTH).json()["rows"]
    assert [(r["symbol"], r["qty"]) for r in lots] == [("AAA", "6")]


def test_compliance_api_archive_day_proofs_verify_with_merkle_verify_inclusion(client):
    day = client.get(f"/compliance/archive/{MON.isoformat()}", headers=AUTH).json()
    assert len(day["files"]) == 10 and {f["name"] for f in day["files"]} >= {"form_8949.csv", "ledger_state.json"}
    audit = day["audit"]
    root = bytes.fromhex(audit["merkle_root"])
    assert audit["tree_size"] == len(audit["records"]) == 2
    for record in audit["records"]:
        path = [bytes.fromhex(h) for h in record["proof"]]
        assert verify_inclusion(bytes.fromhex(record["hash"]), record["index"], audit["tree_size"], path, root)
        assert not verify_inclusion(bytes.fromhex("00" * 32), record["index"], audit["tree_size"], path, root)
    assert [r["kind"] for r in audit["records"]] == ["fill", "fill"]


def test_compliance_api_archive_file_is_the_sealed_bytes(client, home):  # noqa: F811
    response = client.get("/compliance/archive/2024-03-05/form_8949.csv", headers=AUTH)
    assert response.status_code == 200 and response.content == (home / "reports" / "2024-03-05" / "form_8949.csv").read_bytes()


@pytest.mark.parametrize(("path", "status", "detail"), [
    ("/compliance/tax/2023/form-8949", 404, "year 2023: no sealed day in the archive"),
    ("/compliance/archive/2024-03-09", 404, "archive: nothing sealed for 2024-03-09"),
    ("/compliance/archive/2024-03-05/nope.csv", 404, "archive: 2024-03-05: no sealed file named 'nope.csv'"),
])
def test_compliance_api_missing_year_day_or_file_is_404_naming_it(client, path, status, detail):
    response = client.get(path, headers=AUTH)
    assert (response.status_code, response.json()["detail"]) == (status, detail)


@pytest.mark.parametrize("path", ["/compliance/tax/abc/form-8949", "/compliance/tax/1800/schedule-d",
                                  "/compliance/archive/2024-13-01", "/compliance/archive/yesterday"])
def test_compliance_api_bad_year_or_date_is_422_without_a_traceback(client, path):
    response = client.get(path, headers=AUTH)
    assert response.status_code == 422 and "Traceback" not in response.text


def test_compliance_api_docs_list_the_compliance_endpoints(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/compliance/tax/{year}/form-8949", "/compliance/archive/{day}"} <= set(paths)


def test_compliance_api_an_altered_archived_object_is_a_one_line_500_not_a_proof(client, home):  # noqa: F811
    entry = next(f for f in client.get("/compliance/archive/2024-03-04", headers=AUTH).json()["files"]
                 if f["name"] == "audit_records.jsonl")
    obj = home / "archive" / "objects" / entry["sha256"][:2] / entry["sha256"]
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes().replace(b'"qty":"10"', b'"qty":"11"'))
    response = client.get("/compliance/archive/2024-03-04", headers=AUTH)
    assert response.status_code == 500 and "Traceback" not in response.text
    assert response.json()["detail"] == (f"archive: object {entry['sha256']}: content does not match its hash (altered) "
                                         "(run `alphaline compliance verify`)")
