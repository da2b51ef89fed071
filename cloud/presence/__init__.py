"""Presence: stored events, dead letters, gateway health and visits."""
