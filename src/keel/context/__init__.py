"""The context engine: ingest, hybrid retrieval, rerank and context assembly.

Not built yet: see the context-engine issue. This package is where it lands.
"""
