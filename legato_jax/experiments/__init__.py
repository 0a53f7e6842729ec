"""Experiments on trained models: sharpness (and, later, time-to-failure)."""
