"""``keel up [DIR]``: a working knowledge assistant in one command.

In an empty (or new) folder it creates a project from the ``knowledge-assistant``
template (a workflow that searches a docs folder with File search, answers with citations
and checks the answer against its sources), ingests ``docs/`` into the workflow's
collection, publishes the workflow, makes it ChatKit's default, and starts ``keel serve``
from the project folder.

Each new project gets its own names, from its folder: ``keel up demo`` makes the workflow
``demo`` and the collection ``demo-handbook`` (``demo-2`` / ``demo-2-handbook`` if either is
taken in this ``KEEL_HOME``), so two projects never share a knowledge base. In a folder that already holds a Keel project (``workflow.yaml`` + ``keel.toml``)
it does the same with that project: re-ingesting is incremental, and publishing an
unchanged workflow keeps its version.

Nothing here needs a model: a new project made where no model key is set answers with the
built-in extractive answerer (model string ``extractive``: it quotes the sentences of the
retrieved passages that answer, with citations; see docs/models.md, "Offline answering"), and
``keel up --model ...`` switches it to a model in one line.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import typer

from keel.errors import UserError

EPILOG = """Examples:

  mkdir kb && cd kb && keel up        # demo project here, served on :8000

  keel up my-assistant --model ollama:llama3.2

  keel up kb --docs ~/handbook        # your documents, not the samples

  keel up kb --no-serve               # all but starting the server

Without a model key a new project answers offline: the extractive answerer quotes the
docs' sentences that answer, with citations. Switch to a model in one line (export
OPENAI_API_KEY=... and --model openai:gpt-4.1-mini, or --model ollama:llama3.2). See
docs/serve.md ("keel up").
"""

TEMPLATE = "knowledge-assistant"
OFFLINE = "extractive"
"""The answerer a new project gets when its template's models have no key (docs/models.md)."""


class UpError(UserError):
    """``keel up`` cannot prepare the project as asked."""


def up(
    directory: Path = typer.Argument(Path("."), help="The project folder: empty or new (created), or an existing "  # noqa: B008
                                     "Keel project (reused). Default: the current folder."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model string for the workflow's model aliases, "
                                     "written to keel.toml (e.g. ollama:llama3.2, openai:gpt-4.1-mini)."),
    docs: Path | None = typer.Option(None, "--docs", help="Ingest this folder instead of the project's docs/."),  # noqa: B008
    embedder: str | None = typer.Option(None, "--embedder", help="Embedder of a new collection: minilm "
                                        "(default, local), openai:MODEL, ollama:MODEL."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port (0 picks a free one)."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the server at the end (default) or stop "
                               "after publishing."),
) -> None:
    """Create (or reuse) a knowledge-assistant project, ingest its docs, publish it and serve it."""
    target = directory.expanduser().resolve()
    here = Path.cwd().resolve()
    again = _command_for(directory, target, here)
    docs_dir = docs.expanduser().resolve() if docs is not None else None
    if docs_dir is not None and not docs_dir.is_dir():
        raise UpError(f"--docs {docs} is not a folder", hint="give the folder of documents to ingest")
    if model:  # checked before anything is written
        model = _checked_model(model, here)
    if serve:  # a second `keel up` finds out now, not after ingesting
        _check_port(host, port, again)
    created = _prepare(target, directory)
    os.chdir(target)
    if model:
        _set_model(target / "keel.toml", model)
        print(f"model: every alias in keel.toml now names {model}")
    elif created and _models_without_keys(target):
        _set_model(target / "keel.toml", OFFLINE)
    from keel.workflows import load, publish

    loaded = load(target / "workflow.yaml")
    spec = loaded.spec
    for collection in dict.fromkeys(n.collection for n in spec.nodes if n.type == "file_search"):
        _ingest(collection, docs_dir or target / "docs", embedder)
    version = publish(loaded)
    print(f"published workflow {version.name} v{version.version}")
    _set_chatkit_default(target / "keel.toml", version.name)
    print(_model_status(spec, again))
    if not serve:
        where = "" if target == here else f"cd {target} && "
        print(f"\nready{' (created ' + str(directory) + ')' if created else ''}: start it with "
              f"`{where}keel serve`, or run once: keel run {version.name} --input \"How many holiday days do I get?\"")
        return
    _serve(host, port, again)


def _command_for(shown: Path, target: Path, here: Path) -> str:
    """``keel up`` as the user can run it again from where they are (with the folder they named)."""
    import shlex

    return "keel up" if target == here else f"keel up {shlex.quote(str(shown))}"


# -- the project ------------------------------------------------------------------------------


def _is_project(folder: Path) -> bool:
    return (folder / "workflow.yaml").is_file() and (folder / "keel.toml").is_file()


def _prepare(target: Path, shown: Path) -> bool:
    """Create the project in ``target`` (True) or check that it holds one to reuse (False)."""
    if target.exists() and not target.is_dir():
        raise UpError(f"{shown} is a file, not a folder", hint="give a folder: keel up my-assistant")
    if target.is_dir() and any(target.iterdir()):
        if _is_project(target):
            print(f"using the Keel project in {shown}")
            return False
        raise UpError(f"{shown} is not empty and is not a Keel project (no workflow.yaml and keel.toml)",
                      hint="run keel up in an empty folder, or name a new one: keel up my-assistant")
    from keel.workflows.templates import create_project

    workflow, collection = _new_names(target)
    create_project(TEMPLATE, target)
    _rename(target, workflow, collection)
    print(f"created {shown} from the {TEMPLATE} template (workflow.yaml, keel.toml, docs/): "
          f"workflow {workflow!r}, collection {collection!r}")
    return True


def _slug(folder: Path) -> str:
    """A workflow name from a folder name: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", folder.name.lower()).strip("-")[:80] or "assistant"


def _new_names(target: Path) -> tuple[str, str]:
    """The workflow and collection names of a new project in ``target``: ``NAME`` and
    ``NAME-handbook`` after the folder, or ``NAME-2``... when this KEEL_HOME already has either."""
    from keel.config import get_settings
    from keel.store import open_store

    home = get_settings().home
    collections = {p.name for p in (home / "collections").glob("*") if (p / "collection.db").is_file()}
    store = open_store(home)
    try:
        workflows = {r["name"] for r in store.query("SELECT DISTINCT name FROM workflow_versions")}
    finally:
        store.close()
    base = _slug(target)
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        if name not in workflows and f"{name}-handbook" not in collections:
            return name, f"{name}-handbook"
    raise UpError(f"every name from {base!r} to {base}-999 is taken in {home}",
                  hint="name the project folder differently: keel up another-name")


def _rename(target: Path, workflow: str, collection: str) -> None:
    """Give the template's files the project's own workflow and collection names."""
    spec = target / "workflow.yaml"
    text = spec.read_text(encoding="utf-8")
    text = re.sub(r"^name: .*$", f"name: {workflow}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"(\bcollection: )handbook$", rf"\g<1>{collection}", text, flags=re.MULTILINE)
    text = text.replace("keel context add handbook ", f"keel context add {collection} ")
    spec.write_text(text, encoding="utf-8")
    evals = target / "evals" / "handbook.yaml"
    if evals.is_file():
        evals.write_text(evals.read_text(encoding="utf-8").replace(
            "workflow: knowledge-assistant@", f"workflow: {workflow}@"), encoding="utf-8")
    readme = target / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        text = text.replace("`handbook` collection", f"`{collection}` collection")
        text = text.replace("keel context add handbook ", f"keel context add {collection} ")
        text = text.replace("Created by `keel init --template knowledge-assistant`.",
                            f"Created by `keel up` from the knowledge-assistant template; its workflow is "
                            f"`{workflow}`.")
        readme.write_text(text, encoding="utf-8")


_ALIAS_LINE = re.compile(r'^(\s*[A-Za-z0-9_.-]+\s*=\s*)"[^"\n]*"(.*)$')


def _checked_model(model: str, here: Path) -> str:
    """``model`` parsed (a malformed string fails here, with a hint), a ``local:`` path made
    absolute against ``here`` (the server runs in the project folder) and checked to exist."""
    from keel.models import parse_model_string

    ms = parse_model_string(model)
    if ms.prefix != "local":
        return model.strip()
    path = Path(ms.name).expanduser()
    path = path if path.is_absolute() else (here / path).resolve()
    if not path.is_file():
        raise UpError(f"--model {model}: no model file at {path}",
                      hint="give the path of a .gguf file, relative to this folder or absolute, e.g. "
                           "--model local:./qwen2.5-0.5b-instruct-q4_k_m.gguf")
    return f"local:{path}"


def _set_model(path: Path, model: str) -> None:
    """Point every alias under ``[models]`` in ``path`` at ``model`` (other lines untouched)."""
    from keel.models import parse_model_string

    parse_model_string(model)  # a malformed string fails here, with a hint
    lines, section, changed = path.read_text(encoding="utf-8").splitlines(), None, 0
    for i, line in enumerate(lines):
        head = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if head:
            section = head.group(1).strip()
            continue
        m = _ALIAS_LINE.match(line) if section == "models" else None
        if m:
            lines[i] = f'{m.group(1)}"{model}"{m.group(2)}'
            changed += 1
    if not changed:
        lines += ["", "[models]", f'default = "{model}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set_chatkit_default(path: Path, workflow: str) -> None:
    """Make ``workflow`` ChatKit's default (``[chatkit] workflow``) unless one is set."""
    import tomllib

    text = path.read_text(encoding="utf-8")
    if "workflow" in tomllib.loads(text).get("chatkit", {}):
        return
    sep = "" if text.endswith("\n") else "\n"
    path.write_text(f'{text}{sep}\n# The workflow that answers ChatKit front ends (docs/chatkit.md).\n[chatkit]\n'
                    f'workflow = "{workflow}"\n', encoding="utf-8")


def _ingest(collection: str, folder: Path, embedder: str | None) -> None:
    if not folder.is_dir():
        raise UpError(f"no docs folder at {folder} for collection {collection!r}",
                      hint="add documents there, or point at yours: keel up --docs PATH")
    try:
        from keel.context import Collection
    except ImportError as e:
        raise UpError(f"the context engine is not installed ({e.name} is missing)",
                      hint="pip install 'keel[context,embeddings]'") from None
    files = [p for p in folder.rglob("*") if p.is_file()]
    print(f"ingesting {len(files)} files from {folder} into collection {collection!r}...", flush=True)
    with Collection.open(collection, embedder=embedder) as col:
        report = col.add([folder], progress=sys.stderr.isatty())
        stats = col.stats()
    print(f"  {report.files_indexed} indexed ({report.chunks_written} chunks), {report.files_unchanged} unchanged, "
          f"{len(report.skipped)} skipped in {report.seconds:.1f}s; {collection!r} holds {stats.documents} "
          f"documents, {stats.chunks} chunks", flush=True)
    for s in report.skipped:
        print(f"  skipped {s.path}: {s.reason}", file=sys.stderr)


def _missing_keys(models: list[str]) -> list[str]:
    """The model strings among ``models`` that are malformed or whose provider has no key."""
    from keel.config import get_settings
    from keel.errors import KeelError
    from keel.models import parse_model_string
    from keel.models.providers import provider_for

    settings = get_settings()
    missing = []
    for m in dict.fromkeys(models):
        try:
            ms = parse_model_string(m)
            if ms.prefix in ("openai", "openrouter", "openai-compatible"):
                provider_for(ms.prefix, settings, base_url=ms.base_url).check_credentials()
        except KeelError:
            missing.append(m)
    return missing


def _models_without_keys(target: Path) -> list[str]:
    """The model strings the new project's keel.toml names that have no key in this environment."""
    import tomllib

    table = tomllib.loads((target / "keel.toml").read_text(encoding="utf-8")).get("models", {})
    return _missing_keys([v for v in table.values() if isinstance(v, str)])


def answerer_line(again: str = "keel up") -> str:
    """What the extractive answerer is, and the one line that switches to a model."""
    return (f"answerer: {OFFLINE} (no model: quotes the sentences of your docs that answer, with citations). "
            f"Switch to a model in one line: export OPENAI_API_KEY=... and {again} --model openai:gpt-4.1-mini, "
            f"or {again} --model ollama:llama3.2")


def _model_status(spec: Any, again: str = "keel up") -> str:
    """One line: the models the workflow uses are ready, or how to add one."""
    from keel.config import get_settings
    from keel.models import parse_model_string

    settings = get_settings()
    models = [settings.resolve_alias(n.model) for n in spec.nodes if n.type == "agent" and getattr(n, "model", None)]
    missing = _missing_keys(models)
    if not missing and models and all(parse_model_string(m).prefix == OFFLINE for m in models):
        return answerer_line(again)
    if not missing:
        return f"models: {', '.join(dict.fromkeys(models)) or 'none needed'}"
    return (f"models: {', '.join(missing)} has no key yet, so chat answers how to add one; search, ingest and "
            f"traces work now. Add a model: export OPENAI_API_KEY=... or {again} --model ollama:llama3.2")


# -- serving ----------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port(host: str, port: int, again: str) -> None:
    from keel.cli.serve import check_port

    check_port(host, port, fix=f"{again} --port 0")


def _serve(host: str, port: int, again: str = "keel up") -> None:
    from keel.cli.serve import run_server
    from keel.operate.server.settings import is_loopback, load_serve_settings

    if not is_loopback(host):
        raise UpError(f"keel up serves on loopback only, not {host}",
                      hint="keel up --no-serve, create a key (keel keys create), then keel serve --host ...")
    port = port or _free_port(host)
    _check_port(host, port, again)  # before saying it is up
    settings = load_serve_settings(host=host, port=port)
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    print(f"\nKeel is up:\n  UI       {base}/ui\n  API      {base}/v1  (OpenAPI docs at {base}/docs)\n"
          f"  ChatKit  {base}/chatkit\n  MCP      {base}/mcp/\nCtrl-C stops it.", flush=True)
    run_server(settings)
