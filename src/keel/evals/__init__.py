"""Evals: datasets, OpenAI-compatible graders, trace grading and CI gates.

Not built yet: see the evals issue. This package is where it lands.
"""
