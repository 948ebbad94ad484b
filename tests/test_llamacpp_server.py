"""Keel's OpenAI-compatible provider against llama.cpp's own server, running on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")

from keel.errors import StructuredOutputError
from keel.models import ModelSettings, TextDelta, get_model
from keel.models.openai_compat import OpenAICompatibleModel
from keel.models.structured import validate_instance
from keel.store import ModelCalls, open_store
from keel.testing import write_tiny_gguf

SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}},
          "required": ["answer"], "additionalProperties": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--model_alias", "tiny"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("llama.cpp server did not start within 60 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def fresh_mode_cache() -> None:
    OpenAICompatibleModel._mode_cache.clear()


async def test_chat_through_llama_cpp_server(llama_server: str) -> None:
    model = get_model(f"openai-compatible:{llama_server}#tiny")
    r = await model.generate("hello", settings=ModelSettings(max_tokens=12, temperature=0.8, seed=1))
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    assert r.finish_reason in ("stop", "length")
    [row] = ModelCalls(open_store()).recent()
    assert (row.provider, row.model, row.status) == ("openai-compatible", "tiny", "ok")


async def test_streaming_through_llama_cpp_server(llama_server: str) -> None:
    model = get_model(f"openai-compatible:{llama_server}#tiny")
    events = [e async for e in model.generate("hello", stream=True, settings=ModelSettings(max_tokens=12))]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert deltas
    assert events[-1].response.text == "".join(d.text for d in deltas)  # type: ignore[union-attr]
    assert events[-1].response.ttft_ms is not None  # type: ignore[union-attr]


async def test_structured_output_falls_back_to_json_object_and_is_always_valid(llama_server: str) -> None:
    """llama.cpp's server rejects `json_schema` (HTTP 500); Keel falls back to its `json_object`
    mode with the schema, validates, retries once, and otherwise raises a typed error: a parsed
    value is never invalid."""
    model = get_model(f"openai-compatible:{llama_server}#tiny")
    valid = failed = 0
    for seed in range(8):
        try:
            r = await model.generate("yes or no?", output_schema=SCHEMA,
                                     settings=ModelSettings(max_tokens=40, temperature=1.0, seed=seed))
        except StructuredOutputError:
            failed += 1
            continue
        assert validate_instance(r.parsed, SCHEMA) is None
        valid += 1
    assert valid + failed == 8
    assert OpenAICompatibleModel._mode_cache[(llama_server, "tiny")] == "json_object"
    assert valid > 0, "llama.cpp's json_object grammar never produced a valid answer"
