"""The gateway agent: sees phones, pseudonymizes them on the spot, tracks presence,
and publishes transitions over MQTT. Imports `shared` only, never `cloud`."""
