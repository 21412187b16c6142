"""Stored sweeps -> tidy frames -> the paper's tables and figures (entry point: ``analysis/make_tables.py``)."""
