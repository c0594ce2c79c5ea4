"""Blue/green releases per service on Kubernetes.

Run as `python -m deploy.bluegreen status|deploy|promote|rollback|scale-down`.

`decisions` holds the rules as plain functions, `cluster` the API calls (official kubernetes client),
`gate` the Prometheus checks and `commands` the operations that tie them together under a lock.
"""
