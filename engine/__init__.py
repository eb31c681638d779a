"""The streaming engine: sources, features, face tracking, windows, inference backends and smoothing."""
