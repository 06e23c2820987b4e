"""Distillation beside the request path: datasets from traffic, LoRA training on an existing engine
(PEFT + TRL), and promotion of the student through the evals gate and a rollout (docs/tuning.md).

Never imports the web layer or the pipeline; the CLI (`margin tune`) is a thin shell over it.
"""
