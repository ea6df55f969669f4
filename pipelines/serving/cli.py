"""``airsight serve``: run the serving API, or manage its API keys and event exports.

airsight serve [--host H] [--port P] [--workers N]
airsight serve --create-key NAME [--scopes read,write]   # prints the key once
airsight serve --revoke-key NAME | --list-keys
airsight serve --export-events GROUP [--to PATH]        # append stored events to a CSV for training
airsight serve --export-items GROUP [--to PATH]         # PutItems records, newest per item, in ITEMS' columns
airsight serve --export-users GROUP [--to PATH]         # PutUsers records, newest per user, in USERS' columns
"""

from __future__ import annotations

import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8800, help="port (default 8800)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://… (default: $AIRSIGHT_SERVING_DB, "
                        "else SQLite under $AIRSIGHT_HOME)")  # fmt: skip
    parser.add_argument("--groups", help="comma-separated dataset groups to serve (default: all)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--create-key", metavar="NAME", help="create an API key, print it once and exit")
    keys.add_argument("--revoke-key", metavar="NAME", help="revoke the API key NAME and exit")
    keys.add_argument("--list-keys", action="store_true", help="list API keys (names, ids, scopes) and exit")
    keys.add_argument("--export-events", metavar="GROUP", help="append GROUP's stored events to a CSV and exit")
    keys.add_argument("--export-items", metavar="GROUP", help="write GROUP's PutItems records to a CSV and exit")
    keys.add_argument("--export-users", metavar="GROUP", help="write GROUP's PutUsers records to a CSV and exit")
    parser.add_argument("--scopes", default="read,write", help="scopes of --create-key: read, write, admin")
    parser.add_argument("--to", help="CSV of an export (default <storage>/events/INTERACTIONS_events.csv, "
                        "ITEMS_records.csv, USERS_records.csv)")  # fmt: skip


def run(args) -> int:
    if args.database:
        os.environ["AIRSIGHT_SERVING_DB"] = args.database
    if args.groups:
        os.environ["AIRSIGHT_SERVING_GROUPS"] = args.groups
    if (
        args.create_key
        or args.revoke_key
        or args.list_keys
        or args.export_events
        or args.export_items
        or (args.export_users)
    ):
        return _manage(args)
    return serve(args.host, args.port, args.workers, args.log_level)


def _manage(args) -> int:
    from pipelines.serving.auth import create_key
    from pipelines.serving.settings import ServingSettings
    from pipelines.serving.store import DuplicateName, Store

    store = Store(ServingSettings.from_env().resolved_database_url())
    try:
        if args.create_key:
            try:
                key = create_key(store, args.create_key, [s.strip() for s in args.scopes.split(",") if s.strip()])
            except (ValueError, DuplicateName) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(key)
            print(f"# API key {args.create_key!r} ({args.scopes}); it is shown only now", file=sys.stderr)
        elif args.revoke_key:
            if not store.revoke_key(args.revoke_key):
                print(f"error: no active API key named {args.revoke_key!r}", file=sys.stderr)
                return 2
            print(f"revoked {args.revoke_key}")
        elif args.list_keys:
            for name, key_id, scopes, revoked in store.list_keys():
                print(f"{name}\tas_{key_id}_…\t{scopes}\t{'revoked' if revoked else 'active'}")
        elif args.export_items or args.export_users:
            from pipelines.serving.catalog import default_path, export_records
            from pipelines.settings import find_group

            kind = "ITEMS" if args.export_items else "USERS"
            group = find_group(args.export_items or args.export_users)
            try:
                done = export_records(store, group, kind, args.to or default_path(group.storage_root, kind))
            except LookupError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"{done['records']} {kind.lower()} record(s) written to {done['path']} "
                  f"(through record id {done['last_record_id']})")  # fmt: skip
        else:
            from pipelines.serving.events import default_path, export_events
            from pipelines.settings import find_group

            group = find_group(args.export_events)
            done = export_events(store, group.name, args.to or default_path(group.storage_root))
            print(f"{done['events']} event(s) appended to {done['path']} (through event id {done['last_event_id']})")
    finally:
        store.close()
    return 0


def serve(host: str, port: int, workers: int = 1, log_level: str = "info") -> int:
    import tempfile

    import uvicorn

    from pipelines.serving.observability import configure_logging

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="airsight-metrics-")
    configure_logging(log_level)
    uvicorn.run(
        "pipelines.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,  # the app writes one JSON line per request itself
        log_config=None,
    )
    return 0
