"""Adapters from real grid operators' published formats to wattstream grid records (`schemas.grid`).

Each adapter handles a source's *format*, not one file, and returns the records (JSON-ready
dicts, oldest first) with a `SkipReport` of what it left out and why. The fuel mapping of each
source is documented in its module and in the README.
"""
