"""``reprorec-services up|down|status``: local PostgreSQL + MLflow server on 127.0.0.1.

``up`` returns once both servers run (they stay up, in the background, until ``down``). When
``up`` is stopped while it starts them (Ctrl-C, SIGTERM, SIGHUP), it stops what it had started
and exits with 128 + the signal number (130, 143, 129). ``down`` returns once nothing of either
server is left.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark import services
from benchmark.redaction import redact_text, redact_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reprorec-services",
        description="Start/stop a PostgreSQL server and an MLflow tracking server on 127.0.0.1.",
        epilog="Exit status: 0, 1 on an error, 128 + the signal number when a signal stopped `up` "
        "(what it had started is stopped too).",
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
            # Without this, SIGTERM/SIGHUP would end Python at once and leave the servers started
            # so far running; as Terminated, up()'s cleanup stops them.
            with services.StopSignals() as stop:
                try:
                    with stop.armed():
                        state = services.up(args.dir)
                except services.Terminated as exc:
                    # A no-op but when the signal came just after up() returned; signals during
                    # it are only recorded (still in StopSignals).
                    services.down(args.dir)
                    print(
                        f"reprorec-services: stopped by signal {exc.signum}; stopped what was started",
                        file=sys.stderr,
                    )
                    return exc.exit_code
            print(f"PostgreSQL  127.0.0.1:{state.pg_port} (databases mlflow, optuna)")
            print(f"MLflow      {state.tracking_uri}")
            print(f"Optuna      {redact_url(state.optuna_storage)}")
            print(f"URLs (with credentials, mode 0600): {Path(state.dir) / 'urls.json'}")
        elif args.action == "down":
            print("stopped" if services.down(args.dir) else "nothing was running")
        else:
            print(json.dumps(services.status(args.dir), indent=2))
    except services.ServiceError as exc:
        print(f"reprorec-services: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
