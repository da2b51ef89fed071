"""Dry runs of a scenario over the tenant's recorded history: asked for (202, a job), then
read back with their progress and, once done, their report. A draft can be run before it
is saved: it is checked as a save would check it."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status

from cloud.api.access import MayReadAnalytics, MayWriteScenarios
from cloud.api.deps import NowDep, OutboundPolicyDep, SessionDep
from cloud.api.errors import refusals
from cloud.api.scenarios import (
    missing_references,
    refused_webhooks,
    unprocessable,
    unsupplied_fields,
)
from cloud.scenarios.catalog import get_scenario
from cloud.scenarios.spec import ScenarioSpec, save_problems
from cloud.simulation.jobs import list_simulations, queue_simulation
from cloud.simulation.models import Simulation, SimulationPublic, SimulationRequest
from cloud.simulation.replay import Period

router = APIRouter(tags=["simulations"])


def public(row: Simulation) -> SimulationPublic:
    return SimulationPublic.model_validate(row, from_attributes=True)


@router.post("/scenarios/{key}/simulations", response_model=SimulationPublic,
             status_code=status.HTTP_202_ACCEPTED)
def start_simulation(
    caller: MayWriteScenarios, session: SessionDep, now: NowDep, tenant: str, key: str,
    body: SimulationRequest, policy: OutboundPolicyDep,
) -> SimulationPublic:
    """Queue a dry run of the stored scenario `key`, or of the draft in `spec`, over the
    `days` before `until`: a scenario worker runs it on a copy of the history, sends
    nothing and changes nothing. 404 when there is neither; 422 for a draft a save
    would refuse, or an `until` in the future."""
    until = body.until or now
    if until > now:
        raise unprocessable([(("until",), "must not be in the future: a dry run replays "
                              "what was recorded")])
    spec, version = _what_to_run(session, tenant=tenant, key=key, draft=body.spec,
                                 policy=policy)
    row = queue_simulation(
        session, tenant=tenant, spec=spec, version=version,
        period=Period(until - timedelta(days=body.days), until), sample=body.sample,
        requested_by=caller.name, now=now,
    )
    session.commit()
    return public(row)


def _what_to_run(
    session: SessionDep, *, tenant: str, key: str, draft: ScenarioSpec | None,
    policy: OutboundPolicyDep,
) -> tuple[ScenarioSpec, int | None]:
    if draft is None:
        stored = get_scenario(session, tenant=tenant, key=key)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"scenario {key!r} not found; send a draft as `spec`")
        return ScenarioSpec.model_validate(stored.spec), stored.version
    if draft.key != key:
        raise unprocessable([(("spec", "key"), f"the draft's key must be {key!r}, as in "
                              "the path")])
    problems = [*save_problems(draft), *refused_webhooks(policy, tenant=tenant, spec=draft),
                *missing_references(session, tenant=tenant, spec=draft),
                *unsupplied_fields(session, tenant=tenant, spec=draft)]
    if problems:
        raise unprocessable([(("spec", *loc), message) for loc, message in problems])
    return draft, None


@router.get("/scenarios/{key}/simulations", response_model=list[SimulationPublic])
def scenario_simulations(
    caller: MayReadAnalytics, session: SessionDep, tenant: str, key: str
) -> list[SimulationPublic]:
    """The scenario's latest dry runs, newest first."""
    return [public(row) for row in list_simulations(session, tenant=tenant, key=key)]


@router.get("/simulations/{simulation_id}", response_model=SimulationPublic,
            responses=refusals(404))
def one_simulation(
    caller: MayReadAnalytics, session: SessionDep, tenant: str, simulation_id: int
) -> SimulationPublic:
    """A dry run: its progress while it runs, its report once done."""
    row = session.get(Simulation, simulation_id)
    if row is None or row.tenant != tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dry run {simulation_id} not found")
    return public(row)
