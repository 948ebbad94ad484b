"""Test support, public API: use it in your own tests.

- :func:`scripted` / :class:`ScriptedModel`: a model that answers from a queue of
  replies, reached as ``scripted:<name>`` like any real model;
- :func:`write_tiny_gguf`: writes a tiny random-weight GGUF model (deterministic
  for a seed) so tests exercise the real local-inference path through llama.cpp.
"""

from keel.models.scripted import Reply, ScriptedModel, get_script, scripted
from keel.testing._tiny_gguf import write_tiny_gguf

__all__ = ["Reply", "ScriptedModel", "get_script", "scripted", "write_tiny_gguf"]
