"""One experiment per lecture claim group, and `reproduce` that runs them all (see reproduce.py)."""
