"""Versioned schema migrations, applied in order, each exactly once.

Rules, so that PostgreSQL can back the same schema (see docs/store.md):
- append new migrations at the end; never edit or reorder a released one;
- portable SQL only: TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN-as-INTEGER; ids are
  TEXT (UUIDs or ULIDs made by Keel), never autoincrement; times are epoch seconds
  as DOUBLE PRECISION; JSON is TEXT.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    name: str
    """Unique, stable name; recorded in ``keel_migrations`` once applied."""
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        "0001_model_calls",
        (
            """
            CREATE TABLE model_calls (
                id TEXT PRIMARY KEY,
                started_at DOUBLE PRECISION NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                operation TEXT NOT NULL,
                status TEXT NOT NULL,
                error_class TEXT,
                error_message TEXT,
                http_status BIGINT,
                attempt BIGINT NOT NULL,
                stream INTEGER NOT NULL,
                structured INTEGER NOT NULL,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cached_tokens BIGINT,
                reasoning_tokens BIGINT,
                latency_ms DOUBLE PRECISION NOT NULL,
                ttft_ms DOUBLE PRECISION,
                cost_usd DOUBLE PRECISION,
                trace_id TEXT,
                span_id TEXT,
                tags TEXT
            )
            """,
            "CREATE INDEX model_calls_started_at ON model_calls (started_at)",
            "CREATE INDEX model_calls_model ON model_calls (provider, model, started_at)",
            "CREATE INDEX model_calls_trace ON model_calls (trace_id)",
        ),
    ),
]

MIGRATIONS.append(
    Migration(
        "0002_workflows",
        (
            # Published versions are immutable: rows are inserted, never updated.
            """
            CREATE TABLE workflow_versions (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                spec TEXT NOT NULL,
                source TEXT NOT NULL,
                source_file TEXT,
                digest TEXT NOT NULL,
                published_at DOUBLE PRECISION NOT NULL,
                UNIQUE (name, version)
            )
            """,
            """
            CREATE TABLE workflow_runs (
                id TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                version BIGINT NOT NULL,
                version_id TEXT NOT NULL,
                status TEXT NOT NULL,
                input TEXT,
                output TEXT,
                error TEXT,
                current_node TEXT,
                seq BIGINT NOT NULL,
                context TEXT NOT NULL,
                trace_id TEXT NOT NULL,
                owner TEXT,
                lease_until DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION
            )
            """,
            "CREATE INDEX workflow_runs_status ON workflow_runs (status, updated_at)",
            "CREATE INDEX workflow_runs_created ON workflow_runs (created_at)",
            # One row per completed node step: the checkpoint a resumed run continues after.
            """
            CREATE TABLE workflow_steps (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                node_id TEXT NOT NULL,
                node_type TEXT NOT NULL,
                port TEXT,
                next_node TEXT,
                output TEXT,
                error TEXT,
                started_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, seq)
            )
            """,
            # Results of model and tool calls inside a step, so a re-executed step replays them.
            """
            CREATE TABLE workflow_memos (
                run_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, key)
            )
            """,
            """
            CREATE TABLE workflow_approvals (
                id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                node_id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                status TEXT NOT NULL,
                message TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                decided_at DOUBLE PRECISION,
                decided_by TEXT,
                comment TEXT,
                UNIQUE (run_id, seq)
            )
            """,
            "CREATE INDEX workflow_approvals_status ON workflow_approvals (status, created_at)",
            # Spans of a trace (OpenTelemetry GenAI attribute names in `attributes`, JSON).
            """
            CREATE TABLE trace_spans (
                span_id TEXT PRIMARY KEY,
                trace_id TEXT NOT NULL,
                parent_id TEXT,
                run_id TEXT,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                ended_at DOUBLE PRECISION,
                status TEXT NOT NULL,
                error TEXT,
                attributes TEXT
            )
            """,
            "CREATE INDEX trace_spans_trace ON trace_spans (trace_id, started_at)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0100_evals",
        (
            # A dataset version is immutable: importing again adds version + 1.
            """
            CREATE TABLE eval_datasets (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                source TEXT,
                item_count BIGINT NOT NULL,
                digest TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                UNIQUE (name, version)
            )
            """,
            """
            CREATE TABLE eval_dataset_items (
                dataset_id TEXT NOT NULL,
                idx BIGINT NOT NULL,
                line BIGINT,
                item TEXT NOT NULL,
                sample TEXT,
                PRIMARY KEY (dataset_id, idx)
            )
            """,
            """
            CREATE TABLE eval_runs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                dataset_id TEXT NOT NULL,
                spec TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION,
                summary TEXT
            )
            """,
            "CREATE INDEX eval_runs_created ON eval_runs (created_at)",
            # One row per (run, target, item): written once the item is sampled and graded,
            # so a resumed run skips exactly these.
            """
            CREATE TABLE eval_results (
                run_id TEXT NOT NULL,
                target TEXT NOT NULL,
                idx BIGINT NOT NULL,
                status TEXT NOT NULL,
                score DOUBLE PRECISION,
                passed INTEGER,
                sample TEXT,
                grades TEXT NOT NULL,
                error TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, target, idx)
            )
            """,
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0003_workflow_approval_keys",
        (
            # One step may wait for several approvals (an Agent node's tool calls, each needing
            # approval): approvals are keyed by (run, step, key); a Human approval node's key is ''.
            # Rebuilt rather than altered, because a UNIQUE constraint cannot be dropped portably.
            """
            CREATE TABLE workflow_approvals_new (
                id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                node_id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                status TEXT NOT NULL,
                message TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                decided_at DOUBLE PRECISION,
                decided_by TEXT,
                comment TEXT,
                key TEXT NOT NULL DEFAULT '',
                UNIQUE (run_id, seq, key)
            )
            """,
            "INSERT INTO workflow_approvals_new (id, run_id, seq, node_id, workflow, status, message, created_at,"
            " expires_at, decided_at, decided_by, comment) SELECT id, run_id, seq, node_id, workflow, status,"
            " message, created_at, expires_at, decided_at, decided_by, comment FROM workflow_approvals",
            "DROP TABLE workflow_approvals",
            "ALTER TABLE workflow_approvals_new RENAME TO workflow_approvals",
            "CREATE INDEX workflow_approvals_status_2 ON workflow_approvals (status, created_at)",
            "CREATE INDEX workflow_approvals_run ON workflow_approvals (run_id)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0101_eval_results_workflow_run",
        (
            # The workflow run an eval result came from (a workflow target, or a dataset built from
            # runs), so a result links to its trace and a trace to the evals that graded it.
            "ALTER TABLE eval_results ADD COLUMN workflow_run_id TEXT",
            "CREATE INDEX eval_results_workflow_run ON eval_results (workflow_run_id)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0200_serve_keys",
        (
            # API keys of `keel serve`: only a SHA-256 of the key is kept; `id` is the key's public
            # prefix (shown in lists and logs). Scopes and caps are JSON / numbers; NULL = no cap.
            """
            CREATE TABLE serve_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                key_hash TEXT NOT NULL,
                scopes TEXT NOT NULL,
                daily_tokens BIGINT,
                daily_cost_usd DOUBLE PRECISION,
                user_daily_tokens BIGINT,
                user_daily_cost_usd DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION,
                last_used_at DOUBLE PRECISION
            )
            """,
            # One row per served request that ran a workflow: what it cost, for daily caps.
            """
            CREATE TABLE serve_usage (
                id TEXT PRIMARY KEY,
                key_id TEXT,
                end_user TEXT,
                day TEXT NOT NULL,
                run_id TEXT,
                workflow TEXT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX serve_usage_key_day ON serve_usage (key_id, day)",
            "CREATE INDEX serve_usage_user_day ON serve_usage (key_id, end_user, day)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0201_serve_requests",
        (
            # One row per HTTP request `keel serve` answered (the access log, without bodies or
            # secrets): what the service-health dashboard reads for requests/min, latency, time
            # to first byte and response codes. `workflow` is set when the request ran one.
            """
            CREATE TABLE serve_requests (
                id TEXT PRIMARY KEY,
                started_at DOUBLE PRECISION NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                route TEXT,
                workflow TEXT,
                version INTEGER,
                key_id TEXT,
                status INTEGER NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                ttfb_ms DOUBLE PRECISION,
                input_tokens BIGINT,
                output_tokens BIGINT,
                streamed INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX serve_requests_started ON serve_requests (started_at)",
            "CREATE INDEX serve_requests_workflow ON serve_requests (workflow, started_at)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0203_chatkit",
        (
            # ChatKit threads as the chatkit package's ThreadMetadata JSON (`doc`), with the
            # columns lists and scoping need: `owner` is who may see the thread (the API key id and
            # end user that created it; '' in open mode), `workflow` the workflow that answers it.
            """
            CREATE TABLE chatkit_threads (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                workflow TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL
            )
            """,
            "CREATE INDEX chatkit_threads_owner ON chatkit_threads (owner, created_at)",
            # Items of a thread (user and assistant messages, widgets, workflow progress) as
            # ThreadItem JSON; `seq` keeps insertion order among items created in the same instant.
            """
            CREATE TABLE chatkit_items (
                id TEXT PRIMARY KEY,
                thread_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                type TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL
            )
            """,
            "CREATE INDEX chatkit_items_thread ON chatkit_items (thread_id, seq)",
            """
            CREATE TABLE chatkit_attachments (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0202_serve_usage_run",
        (
            # `keel serve` reads a run's recorded usage when an approval continues it: by run id.
            "CREATE INDEX serve_usage_run ON serve_usage (run_id)",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0301_run_limits",
        (
            # Resumes of a run that raised (not a node failure: the engine itself could not go on),
            # so the recovery loop gives up after a few identical failures instead of re-claiming
            # the run forever. `error` is the last failure, `count` how many in a row were alike.
            """
            CREATE TABLE workflow_resume_failures (
                run_id TEXT PRIMARY KEY,
                error TEXT NOT NULL,
                count INTEGER NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0300_tenancy",
        (
            # Roles of an API key besides its workflow scopes: JSON list of "approver" (may decide
            # approvals of its workflows) and "admin" (reads every caller's runs in its workflows).
            "ALTER TABLE serve_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '[]'",
            # Who started a run over `keel serve`: the API key and the end user it acted for (NULL
            # for runs started by the CLI, the Python API, or a server in open mode).
            "ALTER TABLE workflow_runs ADD COLUMN key_id TEXT",
            "ALTER TABLE workflow_runs ADD COLUMN end_user TEXT",
            "CREATE INDEX workflow_runs_key ON workflow_runs (key_id, created_at)",
            # Server secrets by name (e.g. the HMAC key that signs ChatKit client tokens), made once.
            """
            CREATE TABLE serve_secrets (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0303_version_models",
        (
            # The model aliases a version was published with (JSON object alias -> model string, as
            # keel.toml's [models] resolved them at publish time), so a run of the version uses
            # them wherever the server runs. NULL for versions published before: those resolve
            # aliases from the settings of the process that runs them.
            "ALTER TABLE workflow_versions ADD COLUMN models TEXT",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0304_workflow_drafts",
        (
            # The web UI canvas's working copy of a workflow, one per name: the YAML text as the
            # editor left it, a revision bumped on every save (a save names the revision it was
            # based on: optimistic concurrency), and the digest of its spec when it parses (NULL
            # when it does not), to tell cheaply whether it differs from the latest version.
            """
            CREATE TABLE workflow_drafts (
                name TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                revision BIGINT NOT NULL,
                digest TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                updated_by TEXT
            )
            """,
            # Preview runs of a draft run an immutable snapshot of it (version 0 of the workflow),
            # never listed as published; runs point at it by id so they resume like any other.
            """
            CREATE TABLE workflow_previews (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                source TEXT NOT NULL,
                digest TEXT NOT NULL,
                models TEXT,
                draft_revision BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX workflow_previews_name ON workflow_previews (name, digest)",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0305_request_run_status",
        (
            # The run a served request ran and how it ended, when it ended within the request (a
            # sync run, a streamed completion, a ChatKit or UI chat turn); NULL otherwise. The
            # dashboard counts a request whose run failed as an error even when it was answered 200.
            "ALTER TABLE serve_requests ADD COLUMN run_id TEXT",
            "ALTER TABLE serve_requests ADD COLUMN run_status TEXT",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0306_optimize_runs",
        (
            # A prompt optimization run (keel optimize prompt): its inputs, where it stands, and
            # its result once finished. Every model call it made is kept in optimize_calls, keyed
            # by what was asked, so a killed run replays its decisions and repeats at most the one
            # call that was in flight.
            """
            CREATE TABLE optimize_runs (
                id TEXT PRIMARY KEY,
                eval_path TEXT NOT NULL,
                eval_spec TEXT NOT NULL,
                target TEXT NOT NULL,
                options TEXT NOT NULL,
                status TEXT NOT NULL,
                error TEXT,
                result TEXT,
                published TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE optimize_calls (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                call_key TEXT NOT NULL,
                kind TEXT NOT NULL,
                response TEXT NOT NULL,
                input_tokens BIGINT,
                output_tokens BIGINT,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, call_key)
            )
            """,
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0307_run_queue",
        (
            # Runs a server started for workers to execute (keel serve --no-execute, keel worker;
            # docs/workflows.md, "Workers"). A row lives from the start (or an answered approval) until
            # the run finishes or waits again; claimed_until is 0 while nobody holds it, and a worker
            # renews it with its heartbeat. The run's own row (workflow_runs) keeps the owner and lease
            # the engine checks: the queue only says who should look at which run next.
            """
            CREATE TABLE run_queue (
                run_id TEXT PRIMARY KEY,
                stream_text INTEGER NOT NULL,
                enqueued_at DOUBLE PRECISION NOT NULL,
                claimed_by TEXT,
                claimed_until DOUBLE PRECISION NOT NULL,
                attempts BIGINT NOT NULL
            )
            """,
            "CREATE INDEX run_queue_ready ON run_queue (claimed_until, enqueued_at)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0308_run_events",
        (
            # Node events and answer tokens of runs executed by another process, for the servers whose
            # clients follow them (GET /v1/runs/{id}/events, streamed chat completions, ChatKit). id is
            # time-ordered and increasing per writer, so a follower reads WHERE id > its last.
            """
            CREATE TABLE run_events (
                run_id TEXT NOT NULL,
                id TEXT NOT NULL,
                kind TEXT NOT NULL,
                doc TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, id)
            )
            """,
            "CREATE INDEX run_events_created ON run_events (created_at)",
        ),
    )
)

MIGRATIONS.append(
    Migration(
        "0309_rate_counters",
        (
            # Requests per key or end user per fixed window, counted atomically in the store so that
            # every server sharing it enforces one limit (INSERT ... ON CONFLICT DO UPDATE ... RETURNING).
            """
            CREATE TABLE rate_counters (
                bucket TEXT NOT NULL,
                window_start BIGINT NOT NULL,
                n BIGINT NOT NULL,
                PRIMARY KEY (bucket, window_start)
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0311_router",
        (
            # A router policy (keel router train): which models it routes between, how (kNN over the
            # embedded query, or a cascade), and the threshold calibrated to a share of strong calls.
            # Training again adds version + 1; `router:NAME` uses the newest version.
            """
            CREATE TABLE router_policies (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version BIGINT NOT NULL,
                spec TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                UNIQUE (name, version)
            )
            """,
            # The outcomes it learned from: one row per eval item, with the query's embedding
            # (float32, base64) and the score each model got on it.
            """
            CREATE TABLE router_examples (
                policy_id TEXT NOT NULL,
                idx BIGINT NOT NULL,
                query TEXT NOT NULL,
                embedding TEXT NOT NULL,
                strong_score DOUBLE PRECISION NOT NULL,
                weak_score DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (policy_id, idx)
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0312_connectors",
        (
            # A connector (keel connectors add): a named MCP server specs use as `mcp: [{connector: NAME}]`.
            # `config` is JSON (server, tools allow-list, approval, workflows, timeout, the names of
            # the credentials); `credentials` is sealed with Fernet under a key kept outside the store
            # (keel.connectors.secretbox), never plain text.
            """
            CREATE TABLE connectors (
                name TEXT PRIMARY KEY,
                config TEXT NOT NULL,
                credentials TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0313_memory",
        (
            # Memory by compaction (keel.context.memory). The write path: the turns of a thread or a
            # run, one row each, keyed by a hash of (scope, source, position, role, text), so writing
            # the same turn twice (a retried step, two processes) keeps one row. `compacted_at` is set
            # once a compaction has turned the turn into facts.
            """
            CREATE TABLE memory_turns (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                collection TEXT NOT NULL,
                source TEXT NOT NULL,
                position BIGINT NOT NULL,
                role TEXT NOT NULL,
                text TEXT NOT NULL,
                said_at DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                compacted_at DOUBLE PRECISION
            )
            """,
            "CREATE INDEX memory_turns_pending ON memory_turns (collection, compacted_at, scope, source, position)",
            # Facts: id = hash of (scope, key, value), so the same fact written twice is one row. `key`
            # is the normalised subject and attribute; among a key's facts the latest by (valid_from,
            # id) is current and the others carry `superseded_by` and `valid_until`.
            """
            CREATE TABLE memory_facts (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                collection TEXT NOT NULL,
                fact_key TEXT NOT NULL,
                subject TEXT NOT NULL,
                attribute TEXT NOT NULL,
                value TEXT NOT NULL,
                valid_from DOUBLE PRECISION NOT NULL,
                valid_until DOUBLE PRECISION,
                superseded_by TEXT,
                sources TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX memory_facts_key ON memory_facts (collection, scope, fact_key)",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0317_model_call_messages",
        (
            # What an Agent node's model call was asked and answered, so it can be exported as a
            # fine-tuning line (keel distill export --workflow/--node): the messages and tools as
            # sent, and the assistant's answer, all JSON. One row per call, keyed by its model span
            # (trace_spans.span_id), written in the transaction that stores the call's span; pruned
            # with the run (keel.store.retention). `model` is the model that answered (a router's
            # choice), `requested` the node's model string.
            """
            CREATE TABLE model_call_messages (
                span_id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                node_id TEXT NOT NULL,
                model TEXT NOT NULL,
                requested TEXT NOT NULL,
                messages TEXT NOT NULL,
                tools TEXT,
                output TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )
            """,
            "CREATE INDEX model_call_messages_run ON model_call_messages (run_id)",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0316_run_idempotency",
        (
            # Idempotency keys of POST /v1/workflows/{name}/runs (the Idempotency-Key header): a
            # retried request, on any server sharing the store, returns the run the first one
            # started (keel.operate.server.idempotency). `scope` is the caller's API key id ('' when
            # the server has no keys), `fingerprint` a hash of the request, to refuse a key reused
            # for a different one. Kept 24 hours.
            """
            CREATE TABLE run_idempotency (
                scope TEXT NOT NULL,
                idem_key TEXT NOT NULL,
                run_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (scope, idem_key)
            )
            """,
            "CREATE INDEX run_idempotency_created ON run_idempotency (created_at)",
        ),
    )
)


MIGRATIONS.append(
    Migration(
        "0323_connector_refresh_lease",
        (
            # Who is refreshing a connector's OAuth tokens right now (keel.connectors.oauth): a lease
            # taken by compare-and-swap on the connector's row (set only where no unexpired lease is),
            # so two processes (two `keel serve`, serve and a worker) never spend the same rotating
            # refresh token; the other waits and uses the pair the holder stores. Released after the
            # refresh; `refresh_until` (epoch seconds) ends the lease of a holder that died.
            "ALTER TABLE connectors ADD COLUMN refresh_owner TEXT",
            "ALTER TABLE connectors ADD COLUMN refresh_until DOUBLE PRECISION",
        ),
    )
)
