"""HTTP API: the Starlette application and its endpoints."""
