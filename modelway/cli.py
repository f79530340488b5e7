"""The `modelway` command (SPEC section 1). Each subcommand forwards to one function."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from modelway.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelway", description="An OpenAI/Anthropic-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $MODELWAY_CONFIG, else the embedded demo)")
    serve.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("--config", required=True)

    models = commands.add_parser("models", help="print the model table a config resolves to")
    models.add_argument("--config", required=True)
    models.add_argument("--discover", action="store_true", help="also ask each provider for its models")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            from modelway.server import run

            if args.workers < 1:
                parser.error("--workers must be at least 1")
            run(args.config or os.environ.get("MODELWAY_CONFIG") or None, args.host, args.port, args.workers)
            return 0
        if args.command == "check":
            return check_config(args.config)
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

    config = load_config(path)
    deployments = sum(len(m.deployments) for m in config.models)
    print(f"{path}: valid ({len(config.providers)} providers, {len(config.models)} models, {deployments} deployments)")
    return 0


def print_models(path: str, discover: bool) -> int:
    from modelway.config import load_config
    from modelway.modeltable import describe_models

    config = load_config(path)
    print(asyncio.run(describe_models(config, discover)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
