"""Workflows: versioned, durable agent graphs with Agent Builder's node vocabulary.

Not built yet: see the workflows issue. This package is where it lands.
"""
