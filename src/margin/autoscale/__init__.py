"""Autoscaling signals for a self-hosted GPU fleet: margin's own view of each deployment's demand,
the model servers' own load read from their /metrics, and a desired replica count (docs/deploy.md)."""
