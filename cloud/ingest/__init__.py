"""Ingestion: the MQTT consumer that turns gateway messages into stored presence."""
