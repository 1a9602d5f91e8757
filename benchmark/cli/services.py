"""``reprorec-services up|down|status``: local PostgreSQL + MLflow server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reprorec-services",
        description="Start/stop a PostgreSQL server and an MLflow tracking server on 127.0.0.1.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=services.DEFAULT_DIR,
        help="state folder (default: .services in the working directory)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            state = services.up(args.dir)
            print(f"PostgreSQL  127.0.0.1:{state.pg_port} (databases mlflow, optuna)")
            print(f"MLflow      {state.tracking_uri}")
            print(f"Optuna      {services.redact_url(state.optuna_storage)}")
            print(f"URLs (with credentials, mode 0600): {Path(state.dir) / 'urls.json'}")
        elif args.action == "down":
            print("stopped" if services.down(args.dir) else "nothing was running")
        else:
            print(json.dumps(services.status(args.dir), indent=2))
    except services.ServiceError as exc:
        print(f"reprorec-services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
