"""API keys and the roles they carry: who may call the HTTP API, and for which tenant."""
