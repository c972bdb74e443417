"""Evaluation: task-aware metrics on gathered predictions, reports, plots, and batch prediction."""
