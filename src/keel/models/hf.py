"""``hf:PATH``: a causal LM in Hugging Face format run with transformers on the CPU.

For students made by ``keel distill train`` (a merged LoRA model in a folder), so ``keel eval``
can grade them next to their teacher; a GGUF file works too (transformers de-quantizes it). Weights
are read from disk only. Greedy decoding unless a temperature is set; tools and structured output
are validated by Keel as for any model (no constrained decoding).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from keel.errors import ProviderError
from keel.models.base import Model, ModelRequest
from keel.models.types import ModelResponse, TextDelta, Usage

__all__ = ["HFModel"]

_loaded: dict[str, tuple[Any, Any]] = {}
_lock = threading.Lock()


def _load(path: str) -> tuple[Any, Any]:
    with _lock:
        if path not in _loaded:
            from keel.optimize.distill import DistillError
            from keel.optimize.lora import load_causal_lm

            try:
                model, tok = load_causal_lm(Path(path))
            except DistillError as e:
                raise ProviderError(e.message, hint=e.hint) from None
            model.eval()
            _loaded[path] = (model, tok)
        return _loaded[path]


class HFModel(Model):
    provider = "hf"

    def _generate(self, request: ModelRequest) -> ModelResponse:
        import torch

        model, tok = _load(self.name)
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.content}
                for m in request.messages if m.role in ("system", "developer", "user", "assistant")]
        if tok.chat_template:
            prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: "
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        s = request.settings
        kw: dict[str, Any] = {"max_new_tokens": s.max_tokens or 256, "pad_token_id": tok.pad_token_id}
        if s.temperature:
            kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p or 1.0)
            if s.seed is not None:
                torch.manual_seed(s.seed)
        else:
            kw["do_sample"] = False
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        new = out[0][ids.shape[1]:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        finish = "length" if len(new) >= kw["max_new_tokens"] else "stop"
        return ModelResponse(text=text, usage=Usage(input_tokens=int(ids.shape[1]), output_tokens=len(new)),
                             finish_reason=finish)

    async def _attempt(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        response = await asyncio.to_thread(self._generate, request)
        if request.stream and response.text:
            yield TextDelta(text=response.text)
        yield response
