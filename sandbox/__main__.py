"""`python -m sandbox --port 8765`: the fake Meta for local development."""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from sandbox.server import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Meta Graph sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    app = create_app()
    print(f"Meta sandbox on http://{args.host}:{args.port} (control API under /__sandbox/)")
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
