"""Measurement: MACs and parameters (one counter used everywhere), CPU latency, accuracy."""
