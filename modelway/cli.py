"""The `modelway` command (SPEC section 1). Each subcommand forwards to one function."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from modelway.errors import ConfigError
from modelway.logs import FORMATS, LEVELS, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelway", description="An OpenAI/Anthropic-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $MODELWAY_CONFIG, else the embedded demo)")
    serve.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", choices=LEVELS, help="debug | info (default) | warning | error "
                       "(or MODELWAY_LOG_LEVEL)")
    serve.add_argument("--log-format", choices=FORMATS, help="text (default) | json: one JSON object per line "
                       "(or MODELWAY_LOG_FORMAT)")

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("--config", required=True)

    models = commands.add_parser("models", help="print the model table a config resolves to")
    models.add_argument("--config", required=True)
    models.add_argument("--discover", action="store_true", help="also ask each provider for its models")

    commands.add_parser("schema", help="print the config file's JSON Schema (for editors and CI checks)")

    simulate = commands.add_parser(
        "simulate", help="replay a workload against simulated backends through the real strategies"
    )
    simulate.add_argument("--scenario", default="hetero", help="hetero (default) | degrade")
    simulate.add_argument(
        "--workload",
        default="independent",
        help="comma-separated: independent (default) | multiturn | agents | system-prompts",
    )
    simulate.add_argument("--utilisation", help="shares of fleet capacity, e.g. 0.5,0.8,0.95 (the default)")
    simulate.add_argument("--seed", default="1", help="random seed (default 1), or several: 1,2,3 or 1-5")
    simulate.add_argument("--requests", type=int, default=50000, help="requests per run (default 50000)")
    simulate.add_argument(
        "--trace", help="JSONL: t, prompt_tokens, output_tokens[, model, session, prefix] per line"
    )
    simulate.add_argument("--strategies", help="comma-separated strategy names (default: the load-aware set)")
    simulate.add_argument("--no-oracle", action="store_true", help="leave out the clairvoyant oracle")
    simulate.add_argument("--refresh-ms", type=int, default=500, help="load-metrics refresh (default 500)")
    simulate.add_argument("--instances", default="1", help="gateway instances, or several setups: 1,4 (default 1)")
    simulate.add_argument(
        "--share", default="inflight", help="what several instances share: none | inflight (default) | all; or a list"
    )
    simulate.add_argument(
        "--publish-ms", type=int, default=100, help="shared state's publish interval (default 100, the redis backend's)"
    )
    simulate.add_argument("--block-tokens", type=int, default=16, help="prefix-cache block size (default 16)")
    simulate.add_argument("--plot", default="modelway-simulate.png", help="PNG path (default %(default)s)")
    simulate.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    simulate.add_argument("--json", help="also write the results as JSON to this path")

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", None), getattr(args, "log_format", None))
    try:
        if args.command == "serve":
            from modelway.server import run

            if args.workers < 1:
                parser.error("--workers must be at least 1")
            run(args.config or os.environ.get("MODELWAY_CONFIG") or None, args.host, args.port, args.workers)
            return 0
        if args.command == "check":
            return check_config(args.config)
        if args.command == "simulate":
            return run_simulation(args)
        if args.command == "schema":
            return print_schema()
        return print_models(args.config, args.discover)
    except ConfigError as exc:
        print_config_errors(exc)
        return 1


def print_config_errors(exc: ConfigError) -> None:
    print(f"config is invalid ({len(exc.errors)} error{'s' * (len(exc.errors) > 1)}):", file=sys.stderr)
    for line in str(exc).splitlines():
        print(f"  {line}", file=sys.stderr)


def check_config(path: str) -> int:
    from modelway.config import load_config
    from modelway.config.pending import not_yet_enforced

    config = load_config(path)
    for warning in not_yet_enforced(config):
        print(f"warning: {warning}", file=sys.stderr)
    deployments = sum(len(m.deployments) for m in config.models)
    print(f"{path}: valid ({len(config.providers)} providers, {len(config.models)} models, {deployments} deployments)")
    return 0


def print_models(path: str, discover: bool) -> int:
    from modelway.config import load_config
    from modelway.modeltable import describe_models

    config = load_config(path)
    print(asyncio.run(describe_models(config, discover)))
    return 0


def print_schema() -> int:
    import orjson

    from modelway.config.jsonschema import config_json_schema

    sys.stdout.write(orjson.dumps(config_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def integers(text: str) -> list[int]:
    """"1,2,3" or "1-5" (or both: "1-3,7") as integers."""
    found: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        found += range(int(low), int(high) + 1) if dash else [int(low)]
    return found


def run_simulation(args: argparse.Namespace) -> int:
    from modelway.simulate.run import DEFAULT_STRATEGIES, Options, SimulateError, run

    try:
        utilisations = [float(u) for u in args.utilisation.split(",")] if args.utilisation else None
    except ValueError:
        print(f"--utilisation: expected numbers like 0.5,0.8, got {args.utilisation!r}", file=sys.stderr)
        return 2
    if utilisations is not None and not all(0 < u < 5 for u in utilisations):
        print("--utilisation: each value must be above 0 (1.0 = the fleet's full capacity)", file=sys.stderr)
        return 2
    if args.requests < 100:
        print("--requests: at least 100", file=sys.stderr)
        return 2
    try:
        seeds = integers(args.seed)
    except ValueError:
        print(f"--seed: expected a number, a list like 1,2,3 or a range like 1-5, got {args.seed!r}", file=sys.stderr)
        return 2
    try:
        instances = integers(args.instances)
    except ValueError:
        print(f"--instances: expected numbers like 1,4, got {args.instances!r}", file=sys.stderr)
        return 2
    if not seeds or not instances or args.publish_ms < 1 or args.block_tokens < 1:
        print("--seed and --instances need a value; --publish-ms and --block-tokens at least 1", file=sys.stderr)
        return 2
    options = Options(
        scenario=args.scenario,
        utilisations=utilisations,
        seed=seeds[0],
        seeds=seeds,
        requests=args.requests,
        trace=args.trace,
        workloads=args.workload.split(","),
        strategies=args.strategies.split(",") if args.strategies else list(DEFAULT_STRATEGIES),
        oracle=not args.no_oracle,
        refresh_ms=args.refresh_ms,
        instances=instances,
        shares=args.share.split(","),
        publish_ms=args.publish_ms,
        block_tokens=args.block_tokens,
        plot=None if args.no_plot else args.plot,
        json_path=args.json,
    )
    try:
        run(options)
    except (SimulateError, OSError) as exc:
        print(f"modelway simulate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
