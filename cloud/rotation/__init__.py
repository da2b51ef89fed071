"""Pseudonymization key rotation: each tenant key's state, delivering keys sealed to the
gateways, switching the active key and retiring the old one (`cloud.rotation.flow`)."""
