"""Benchmark-agnostic evaluation maths: per-token scoring and extraction strength (``scoring``), batched
greedy generation (``generation``), membership-inference attacks (``mia``). Each benchmark's own
evaluator and metric table live in its package under ``unlearn.benchmarks``."""
