"""Delivery: getting a decided message to a customer over a channel, and tracking it."""
