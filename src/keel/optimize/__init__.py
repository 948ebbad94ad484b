"""Optimize: eval-driven prompt optimization, model routing, distillation.

Not built yet. This package is where it lands.
"""
