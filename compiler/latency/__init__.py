"""Compiler-aware latency model: layer configurations, the layer table, measurement back-ends, predictor."""
