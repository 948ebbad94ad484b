"""``keel chat``: talk to any model from the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from keel.errors import UserError

if TYPE_CHECKING:
    from keel.models import Message, ModelSettings

EPILOG = """Examples:

  keel chat openai:gpt-4.1-mini "Write a haiku about keels"

  keel chat ollama:llama3.2 --system "Summarise this, briefly" < notes.txt

  git diff | keel chat openai:gpt-4.1-mini -s "Write a commit message for this diff"

  keel chat local:./model.gguf "Extract the city" --schema city.json

With --schema, stdout is exactly one JSON document valid under the schema (or the
command fails with a non-zero exit code): safe to pipe into jq.
"""


def chat(
    model: str = typer.Argument(..., help="Model string (e.g. openai:gpt-4.1-mini, ollama:llama3.2, local:m.gguf) or an alias from keel.toml."),
    message: str | None = typer.Argument(None, help="The user message. Omitted or '-': read from standard "
                                         "input (pipe it in: < notes.txt)."),
    system: str | None = typer.Option(None, "--system", "-s", help="A system message to send first."),
    schema: Path | None = typer.Option(None, "--schema", help="JSON Schema file: the reply is one JSON document valid under it."),  # noqa: B008
    stream: bool = typer.Option(False, "--stream", help="Print the reply as it arrives."),
    temperature: float | None = typer.Option(None, "--temperature", "-t", min=0, max=2, help="Sampling temperature (provider default if unset)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Cap on generated tokens."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed, where the provider supports one."),
) -> None:
    """Send one message to a model and print its reply."""
    # imported here: the models package is heavy, and every other command would pay for it
    from keel.models import Message, ModelSettings
    from keel.models.structured import load_schema_file

    output_schema = load_schema_file(schema) if schema else None
    message = _message(message)
    messages = ([Message.system(system)] if system else []) + [Message.user(message)]
    settings = ModelSettings(temperature=temperature, max_tokens=max_tokens, seed=seed)
    asyncio.run(_chat(model, messages, output_schema, settings, stream))


class ChatInputError(UserError):
    """``keel chat`` has no message to send."""


def _message(given: str | None) -> str:
    """The message: as given, or standard input when it is ``-`` or omitted (and piped)."""
    if given is not None and given != "-":
        return given
    if given is None and (sys.stdin is None or sys.stdin.isatty()):
        raise ChatInputError("no message given", hint='keel chat MODEL "Hello", or pipe it in: '
                             "keel chat MODEL < message.txt")
    text = sys.stdin.read() if sys.stdin is not None else ""
    if not text.strip():
        raise ChatInputError("no message: standard input was empty",
                             hint='give one: keel chat MODEL "Hello", or pipe text in: keel chat MODEL < message.txt')
    return text


async def _chat(model_string: str, messages: list[Message], output_schema: dict | None,
                settings: ModelSettings, stream: bool) -> None:
    from keel.models import ResponseDone, StreamRestart, TextDelta, get_model

    model = get_model(model_string)
    try:
        call = model.generate(messages, output_schema=output_schema, settings=settings, stream=stream)
        if output_schema is not None:
            # Never stream a structured reply: a rejected attempt must not reach stdout.
            response = await call
            print(json.dumps(response.parsed, ensure_ascii=False))
            return
        if not stream:
            response = await call
            print(response.text)
            return
        async for event in call:
            if isinstance(event, TextDelta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, (StreamRestart, ResponseDone)):  # a retry follows, or the reply ended
                sys.stdout.write("\n")
    finally:
        await model.aclose()

