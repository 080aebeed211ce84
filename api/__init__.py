"""The HTTP API: thin FastAPI endpoints that validate, authenticate, rate-limit and hand over to Temporal."""
