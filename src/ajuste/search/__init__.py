"""Hyperparameter search: spaces as data, samplers, pruners, resumable studies, an honest final result."""
