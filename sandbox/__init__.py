"""Local stand-ins for the external providers the orchestrator talks to.

Each module is a real network server speaking the provider's own protocol (FCM HTTP v1
and Google's OAuth2 token endpoint, a Web Push service, an SMS HTTP API, SMTP), so the
production code paths run unchanged against them in the tests and the demo. They bind to
loopback only and keep what they accepted in memory for inspection.
"""
