"""Kubernetes deployment of the platform: kustomize manifests and the blue/green tool (`deploy.bluegreen`)."""
