"""Tracking what happens to sent messages: opens, clicks, unsubscribes (`events`) and
the orders they led to (`attribution`).

Messages carry their tracking token and links from the moment they are queued
(`cloud.messages.tokens`); the HTTP side (redirects, pixel, open reports) is
`cloud.api.tracking`.
"""
