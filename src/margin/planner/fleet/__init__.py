"""The fleet simulator (`margin simulate`, docs/simulate.md): replay per-minute demand against
autoscaling policies for a self-hosted tier and price each one, beside always-on and API-only."""
