"""For an orchestrator: `/healthz` (the process answers) and `/readyz` (the database answers;
how far behind the read model is; the projection beside the service, if any, still runs).

Neither needs a token, and neither tells anything of a workspace. A lagging read model does
not make the service unready: writes and single-run reads never wait for it, and a read
that must see a write says so with `minPosition`.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from domain import payload
from infrastructure import readmodel
from infrastructure.http.problems import unavailable
from infrastructure.http.service import ServiceDep
from infrastructure.http.shapes import Health, Readiness, readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="health", summary="The process is up", response_model=Health)
async def healthz() -> Response:
    return Response('{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    operation_id="readiness",
    summary="The database answers; the read model's lag",
    response_model=Readiness,
    responses={503: {"description": "Not ready", "model": Readiness}},
)
def readyz(service: ServiceDep) -> Response:
    projection = service.projection
    where = "beside" if service.settings.with_projection else "apart"
    try:
        lag = readmodel.lag(service.ledger, service.view()).to_json_dict()
    except unavailable() as error:
        body = readiness(False, f"the database failed: {error}", where, None)
        return Response(payload.dumps(body), status_code=503, media_type="application/json")
    if projection is not None and not projection.running:
        detail = f"the projection beside the service stopped: {projection.failure or 'unknown'}"
        body = readiness(False, detail, where, lag)
        return Response(payload.dumps(body), status_code=503, media_type="application/json")
    body = readiness(True, "the database answers", where, lag)
    return Response(payload.dumps(body), media_type="application/json")
