"""``keel doctor``: check configuration, the store and every configured model.

Each check prints one line; anything wrong comes with the fix. The exit code is
1 when something is broken (a warning alone, such as "no model configured",
keeps it 0: everything that needs no model still works).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.errors import KeelError

if TYPE_CHECKING:  # keel.config (pydantic-settings) loads when doctor runs, not with every command
    from keel.config import Settings

NO_MODEL_HELP = """\
No model is configured. Keel works without one (ingest, search, traces, evals on
stored outputs); to talk to a model, pick one and set it as the default:

  OpenAI        export OPENAI_API_KEY=sk-...
                export KEEL_MODEL=openai:gpt-4.1-mini
  Ollama        ollama pull llama3.2   (with `ollama serve` running)
                export KEEL_MODEL=ollama:llama3.2
  Local GGUF    pip install 'keel[local]'
                export KEEL_MODEL=local:/path/to/model.gguf
  Any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...)
                export KEEL_MODEL=openai-compatible:http://127.0.0.1:8080/v1#MODEL

Knowledge workflows answer even without one: the model string `extractive` quotes
the sentences of their sources that answer (what `keel up` sets when no key is set).
Or put `default_model = "..."` (and `[models]` aliases) in keel.toml. Then
`keel doctor` again, and `keel chat "$KEEL_MODEL" "hello"`."""


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "info"
    detail: str
    fix: str | None = None


_MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]", "info": "[dim]·[/]"}


def doctor(
    offline: bool = typer.Option(False, "--offline", help="Skip network checks of model endpoints."),
) -> None:
    """Check configuration, the store and each configured model; print the fix for anything wrong."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    checks = run_checks(offline=offline)
    for c in checks:
        console.print(f"{_MARK[c.status]} [bold]{escape(c.name)}[/]: {escape(c.detail)}", soft_wrap=True)
        if c.fix:
            for line in c.fix.splitlines():
                console.print(f"    {line}", markup=False, soft_wrap=True)
    failed = sum(c.status == "fail" for c in checks)
    if failed:
        console.print(f"\n[red]{failed} problem{'s' if failed > 1 else ''} found.[/]")
        raise typer.Exit(1)
    console.print("\nAll checks passed.")


def run_checks(*, offline: bool = False) -> list[Check]:
    checks = [
        Check("python", "ok" if sys.version_info >= (3, 11) else "fail",
              sys.version.split()[0], None if sys.version_info >= (3, 11) else "Keel needs Python 3.11 or newer")
    ]
    from keel.config import get_settings

    try:
        settings = get_settings()
    except KeelError as e:
        checks.append(Check("configuration", "fail", e.message, e.hint))
        return checks
    checks.append(Check("configuration", "ok", _config_sources()))
    from keel.cli.doctor_store import check_store

    checks.extend(check_store(settings))
    checks.extend(_check_models(settings, offline=offline))
    checks.extend(_check_extras())
    checks.append(_check_grader_sandbox())
    return checks


def _check_grader_sandbox() -> Check:
    """Which sandbox python graders run in here (docs/security.md, "Python graders sandbox")."""
    from keel.evals.graders import _sandbox

    try:
        sandbox = _sandbox.current()
    except KeelError as e:
        return Check("python graders", "fail", e.message, e.hint)
    if sandbox.mode == "bubblewrap":
        return Check("python graders", "ok", f"sandboxed by bubblewrap ({sandbox.why})")
    return Check("python graders", "info", f"resource limits only: {sandbox.why}",
                 "graders can read this user's files and Keel's environment; install bubblewrap "
                 "(apt-get install bubblewrap) to isolate them (docs/security.md)")


def _config_sources() -> str:
    found = [p for p in ("keel.toml", ".env") if Path(p).is_file()]
    return "read from environment" + "".join(f", ./{p}" for p in found)


def _configured_models(settings: Settings) -> list[tuple[str, str]]:
    models = [(f"alias {name}", target) for name, target in settings.models.items()]
    if settings.default_model:
        models.insert(0, ("default model", settings.default_model))
    return models


def _check_models(settings: Settings, *, offline: bool) -> list[Check]:
    configured = _configured_models(settings)
    if not configured:
        return [Check("models", "warn", "no model configured", NO_MODEL_HELP)]
    return [_check_model(label, target, settings, offline=offline) for label, target in configured]


def _check_model(label: str, target: str, settings: Settings, *, offline: bool) -> Check:
    import httpx

    from keel.models import get_model, parse_model_string

    name = f"{label} ({target})"
    try:
        spec = parse_model_string(settings.resolve_alias(target))
        model = get_model(target, settings=settings)
    except KeelError as e:
        return Check(name, "fail", e.message, e.hint)
    if spec.prefix == "scripted":
        return Check(name, "ok", "scripted test model")
    if spec.prefix == "extractive":  # issue 19: say which answerer is in use, and the switch
        from keel.models.extractive import SWITCH

        return Check(name, "ok", "answerer: extractive, no model (quotes the sentences of the retrieved passages "
                                 f"that answer, with citations); switch to a model in one line: {SWITCH}")
    if spec.prefix == "local":
        from keel.models.packaged import local_path  # local:smollm2-135m: its joined, checked file

        return _check_local_file(name, Path(local_path(spec.name)))
    if offline:
        return Check(name, "info", "network check skipped (--offline)")
    provider = model.provider_config  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
    try:
        r = httpx.get(f"{provider.base_url.rstrip('/')}/models", headers=headers, timeout=5.0)
    except httpx.HTTPError as e:
        return Check(name, "fail", f"cannot reach {provider.base_url} ({type(e).__name__})",
                     "start the server or fix the URL" + (
                         "; for Ollama: `ollama serve`, or set OLLAMA_HOST" if spec.prefix == "ollama" else ""))
    if r.status_code in (401, 403):
        return Check(name, "fail", f"{provider.base_url} refused the API key (HTTP {r.status_code})",
                     f"check {provider.key_env}")
    if r.status_code >= 400:
        return Check(name, "warn", f"{provider.base_url}/models answered HTTP {r.status_code}",
                     "the endpoint may still serve chat; try `keel chat` with this model")
    listed = _listed_models(r)
    if listed and spec.name not in listed:
        return Check(name, "warn", f"reachable, but {spec.name!r} is not among its {len(listed)} models",
                     "check the model name: " + ", ".join(sorted(listed)[:8]))
    return Check(name, "ok", f"reachable at {provider.base_url}, structured output: {model.structured_mode}")


def _listed_models(r: Any) -> set[str]:
    try:
        return {m["id"] for m in r.json().get("data", []) if isinstance(m, dict) and "id" in m}
    except (ValueError, AttributeError):
        return set()


def _check_local_file(name: str, path: Path) -> Check:
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(name, "fail", "llama-cpp-python is not installed", "pip install 'keel[local]'")
    if not path.is_file():
        return Check(name, "fail", f"{path} does not exist", "download a GGUF file or fix the path")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        return Check(name, "fail", f"{path} is not a GGUF file", "llama.cpp needs a .gguf model file")
    size_mb = path.stat().st_size / 1e6
    return Check(name, "ok", f"GGUF file, {size_mb:.1f} MB, structured output: grammar (llguidance)")


def _check_extras() -> list[Check]:
    extras = {
        "local": ("llama_cpp", "llguidance"),
        "server": ("fastapi", "uvicorn"),
        "postgres": ("psycopg",),
    }
    out = []
    for extra, modules in extras.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            fix = f"pip install 'keel[{extra}]' to enable it"
            if extra == "local":  # llama-cpp-python is source only on PyPI (docs/decisions/0013)
                fix += (" (it compiles llama.cpp: minutes, once per machine, as pip keeps the built wheel; "
                        "to keep a portable build for other venvs and machines, from a checkout of Keel: "
                        "bash scripts/build-local-wheel.sh)")
            out.append(Check(f"extra [{extra}]", "info", "not installed", fix))
        else:
            out.append(Check(f"extra [{extra}]", "info", "installed"))
    return out
