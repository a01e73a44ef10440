"""Faust stream processors of hybridbus: router, egress, archiver (each one process, run with python -m)."""
