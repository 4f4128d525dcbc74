"""The composition root: the `wattstream` CLI reads the settings once and wires the pieces."""
