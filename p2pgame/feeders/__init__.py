"""Built-in feeder data files (package data; see network/registry.py)."""
