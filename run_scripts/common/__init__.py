"""Shared parts of the benchmark folders: converter library (convert_lib), recipes (benchmark), shell runner."""
