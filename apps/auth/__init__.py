"""The auth service: users, credentials, refresh tokens, signing keys and service clients."""
