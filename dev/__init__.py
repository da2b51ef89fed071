"""The developer environment (`vitrina-cloud dev`) and what the demo shares with it:
the orchestrator, a broker, a replaying gateway and the local provider servers, run as
processes on one machine. Not part of a deployment: the products never import it."""
