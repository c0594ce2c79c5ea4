"""The shared kernel every service runs on: probes, request ids, JSON logs, problem+json errors,
token verification against auth's JWKS, and the one HTTP client for calls between services."""
