"""Dry runs: a scenario (stored, or a draft) run over the tenant's own recorded history on
a virtual clock, by the scenario worker's own code, in a scratch database that nothing
sends from (`cloud.simulation.replay`), reported as a shop reads a campaign
(`cloud.simulation.report`), as a job with progress (`cloud.simulation.jobs`)."""
