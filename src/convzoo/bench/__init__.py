"""Measuring models: parameter and MAC counts, latency, throughput, memory, reports."""
