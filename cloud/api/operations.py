"""What probes and Prometheus call: liveness, readiness and metrics.

/healthz and /readyz are open for probes; /metrics too unless `api.metrics_public` is off
(then it needs an operator key).
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from cloud.api.access import operator_access
from cloud.api.errors import refusals
from cloud.db import ping
from cloud.examples import example
from cloud.metrics import render
from cloud.settings import Settings

#: What /metrics answers in.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A few lines of /metrics, as the OpenAPI document shows it.
METRICS_EXAMPLE = (
    "# HELP vitrina_webhooks_total Commerce webhooks received, by outcome\n"
    "# TYPE vitrina_webhooks_total counter\n"
    'vitrina_webhooks_total{outcome="stored"} 1042.0\n'
)
#: /readyz must answer quickly even when a dependency hangs; a probe times out anyway.
READINESS_TIMEOUT_S = 2.0


class WorkerState(Protocol):
    @property
    def connected(self) -> bool: ...


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"ready": True, "database": "ok", "broker": "ok", "worker": "ok"},
    ))

    ready: bool
    database: str
    broker: str
    worker: str | None = None


def operations_router(
    settings: Settings, *, engine: Engine, worker: WorkerState | None
) -> APIRouter:
    """The probes of an app serving `settings` on `engine`, with `worker` (when it runs in
    the same process) reported by /readyz."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", responses={200: {"content": {"application/json": {
        "example": {"status": "ok"}}}}})
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness, responses={
        503: {"model": Readiness, "description": "Not ready: what is missing is named."}})
    def readyz() -> Any:
        readiness = Readiness(
            ready=False, database=_database_reachable(engine), broker=_broker_reachable(settings),
        )
        if worker is not None:
            readiness.worker = "connected" if worker.connected else "not connected"
        readiness.ready = (
            readiness.database == "ok" and readiness.broker == "ok"
            and readiness.worker in (None, "connected")
        )
        code = status.HTTP_200_OK if readiness.ready else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(readiness.model_dump(), status_code=code)

    guard = [] if settings.api.metrics_public else [Depends(operator_access)]

    @router.get("/metrics", dependencies=guard, response_class=PlainTextResponse,
                responses={200: {"content": {METRICS_TYPE: {"example": METRICS_EXAMPLE},
                                             "text/plain": {"example": METRICS_EXAMPLE}},
                                 "description": "Prometheus' text format"},
                           **(refusals(401, 403, 429) if guard else {})})
    def metrics() -> Response:
        return Response(render(), media_type=METRICS_TYPE)

    return router


def _broker_reachable(settings: Settings) -> str:
    try:
        with socket.create_connection(
            (settings.mqtt.host, settings.mqtt.port), timeout=READINESS_TIMEOUT_S
        ):
            return "ok"
    except OSError as error:
        return f"unreachable: {error.strerror or type(error).__name__}"


def _database_reachable(engine: Engine) -> str:
    try:
        ping(engine)
    except Exception as error:
        return f"unreachable: {type(error).__name__}"
    return "ok"

