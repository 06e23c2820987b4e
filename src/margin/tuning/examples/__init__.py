"""Worked examples of distillation (docs/tuning.md)."""
