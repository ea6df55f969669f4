"""The ``airsight`` command.

Exit codes scripts can rely on: 0 success, 2 bad settings, 3 bad data (nothing was
written), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pipelines.errors import AirsightError

EXIT_OK, EXIT_ERROR = 0, 1


def _progress(total: int, label: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr, disable=None, leave=False)

    def step(message: str) -> None:
        bar.set_postfix_str(message)
        bar.update(1)

    return bar, step


def _run_step(step_name: str, group_name: str, as_of: str | None) -> dict:
    from pipelines.preparation import steps
    from pipelines.settings import find_group

    group = find_group(group_name)
    total = len(steps.dataset_types(group)) + (1 if step_name == "import" else 0)
    bar, progress = _progress(total, f"{step_name} {group.name}")
    try:
        func = steps.validate_schema if step_name == "validate" else steps.import_data
        return func(group, as_of, progress=progress)
    finally:
        bar.close()


def cmd_validate(args) -> int:
    manifest = _run_step("validate", args.group, args.as_of)
    print(json.dumps(manifest, indent=2, default=str))
    return EXIT_OK


def cmd_import(args) -> int:
    manifest = _run_step("import", args.group, args.as_of)
    print(json.dumps(manifest, indent=2, default=str))
    return EXIT_OK


def cmd_example_data(args) -> int:
    from pipelines.example_data import write_examples

    written = write_examples(args.directory, seed=args.seed)
    for name, path in written.items():
        print(f"{name}: {path}")
    print(f"export AIRSIGHT_GROUPS_DIR={Path(args.directory).resolve() / 'groups.d'}")
    return EXIT_OK


def cmd_groups(args) -> int:
    from pipelines.settings import discover_groups, groups_dir, load_group

    paths = discover_groups()
    if not paths:
        print(f"no dataset group settings in {groups_dir()}", file=sys.stderr)
    for path in paths:
        group = load_group(path)
        print(f"{group.name}\t{group.kind}\t{path}")
    return EXIT_OK


def cmd_demo(args) -> int:
    """Validate and import every group through its Airflow DAG (dag.test on SQLite)."""
    from pipelines.launch.demo import run_demo

    return run_demo()


# Subcommands whose module owns its arguments: (name, module, help). Each module exposes
# ``add_arguments(parser)`` and ``run(args) -> int`` and imports nothing heavy at top level.
DELEGATED = (
    ("serve", "pipelines.serving.cli", "serve recommendations, events and forecasts over HTTP"),
    ("batch-recommend", "pipelines.personalize.batch", "batch recommendations from JSON Lines to JSON Lines"),
    (
        "deploy",
        "pipelines.launch.deploy",
        "start one role of the scale-out deployment (Celery, PostgreSQL, Redis, MLflow)",
    ),
)
BENCHMARKS = (
    ("forecast", "pipelines.benchmarking.forecast", "measure forecasting accuracy and speed on a data set"),
    ("personalize", "pipelines.benchmarking.personalize", "measure recommendation quality and speed on a data set"),
)


def _delegate(sub, name: str, module: str, text: str) -> None:
    import importlib

    p = sub.add_parser(name, help=text, description=text)
    target = importlib.import_module(module)
    target.add_arguments(p)
    p.set_defaults(func=target.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airsight", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("validate", cmd_validate, "run the Great Expectations suites of a dataset group"),
        ("import", cmd_import, "validate and import a dataset group into a snapshot"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("group", help="group name (in $AIRSIGHT_GROUPS_DIR) or path to its settings file")
        p.add_argument("--as-of", help="data cut-off, ISO date or timestamp (default: now)")
        p.set_defaults(func=func)
    p = sub.add_parser("example-data", help="write the built-in example dataset groups")
    p.add_argument("directory")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_example_data)
    sub.add_parser("groups", help="list dataset groups").set_defaults(func=cmd_groups)
    sub.add_parser("demo", help="run every group's DAG once, in process").set_defaults(func=cmd_demo)
    for name, module, text in DELEGATED:
        _delegate(sub, name, module, text)
    bench = sub.add_parser("bench", help="benchmarks with a stable interface").add_subparsers(
        dest="bench", required=True
    )
    for name, module, text in BENCHMARKS:
        _delegate(bench, name, module, text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except AirsightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's last word: one line, and the trace with -v
        if args.verbose or os.environ.get("AIRSIGHT_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
