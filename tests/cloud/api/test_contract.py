"""The contract: every operation in the OpenAPI document, driven by schemathesis with
generated valid and invalid requests, as the back office (an admin key), as a shop's app
(an app key) and as its signed-in customer (the app key and a customer token), on
PostgreSQL (which refuses what SQLite lets through: NUL characters, integers past the
column's range).

Every answer must be: no server error, a status code the operation documents, a body
and a content type matching what it documents for that code (refusals: `ErrorBody`).

The suite runs a bounded pass (a few examples per operation, derandomized, so a
failure reproduces). A deeper one, with schemathesis' coverage phase (boundary values of
every parameter) and more examples:

    VITRINA_CONTRACT_EXAMPLES=50 VITRINA_CONTRACT_COVERAGE=1 \\
        .venv/bin/pytest tests/cloud/api/test_contract.py -p no:cacheprovider
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cloud.api import create_app
from cloud.api.errors import ErrorBody
from cloud.auth.models import Role
from cloud.db import make_engine
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import bearer, cloud_settings, issue_key, register_shop_backend
from tests.support.shop_backend import ShopBackend

TENANT = "contract"
EXAMPLES = int(os.environ.get("VITRINA_CONTRACT_EXAMPLES", "3"))
COVERAGE = os.environ.get("VITRINA_CONTRACT_COVERAGE", "") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

#: The document is the same whatever the database: read it from an app on no database.
DOCUMENT = create_app(cloud_settings(tenant=TENANT, database_url="sqlite://")).openapi()
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
    "phases": {"coverage": {"enabled": COVERAGE}, "stateful": {"enabled": False}},
})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@dataclass(frozen=True)
class World:
    """The API on a fresh PostgreSQL database, a tenant with one signed-in customer, and
    the headers of each kind of caller."""

    app: FastAPI
    customer_id: str
    callers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def world(schema_templates: dict[str, str]) -> Iterator[World]:
    with postgres_copy(schema_templates) as url:
        engine = make_engine(url)
        settings = cloud_settings(tenant=TENANT, database_url=url,
                                  webhook_secrets=["whsec-0123456789abcdef"])
        app = create_app(settings, engine=engine)
        admin = bearer(issue_key(engine, tenant=TENANT))
        app_key = bearer(issue_key(engine, tenant=TENANT, role=Role.APP))
        backend: ShopBackend = register_shop_backend(engine, tenant=TENANT)
        with TestClient(app) as client:
            customer = client.post(f"/tenants/{TENANT}/customers",
                                   json={"external_id": "juan", "first_name": "Juan"},
                                   headers=admin)
        assert customer.status_code == 201, customer.text
        token = backend.token("juan", now=datetime.now(UTC))
        yield World(app=app, customer_id=customer.json()["id"], callers={
            "admin": admin, "app": app_key,
            "customer": {**app_key, "X-Customer-Token": token},
        })
        engine.dispose()


@schema.parametrize()
def test_every_operation_keeps_its_contract(case: Any, world: World) -> None:
    if "tenant" in case.path_parameters:
        case.path_parameters["tenant"] = TENANT
    customer = case.path_parameters.get("customer_id")
    # Half of the cases about a customer name the one who exists (and whose token the
    # customer caller holds); the others whatever was generated.
    if customer is not None and zlib.crc32(str(customer).encode()) % 2:
        case.path_parameters["customer_id"] = world.customer_id
    if case.path.endswith("/presence/live"):
        case.query = {**(case.query or {}), "follow": "false"}  # the snapshot, not minutes
    for headers in world.callers.values():
        case.call_and_validate(app=world.app, headers=headers, checks=CHECKS)


def test_every_refusal_documented_is_an_error_body() -> None:
    """What the schemathesis pass holds routes to: each 4xx an operation documents is
    `ErrorBody` in JSON, and each operation documents the refusals that hold for all."""
    reference = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for code, response in responses.items():
                if code.startswith("4"):
                    assert response["content"] == {
                        "application/json": {"schema": reference}}, (method, path, code)
            if path.startswith("/tenants/"):
                assert {"401", "403", "404", "422", "429"} <= set(responses), (method, path)
            if method in ("post", "put", "patch"):
                assert {"400", "413"} <= set(responses), (method, path)
                assert operation["x-max-body-bytes"] >= 256 * 1024, (method, path)
