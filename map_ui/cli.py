"""``emon map``: serve the dispatcher map and REST API (``--add-user`` manages logins)."""

from __future__ import annotations

import argparse
import getpass
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default EMON_MAP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default EMON_MAP_PORT or 8000)")
    parser.add_argument("--add-user", metavar="USERNAME", default=None,
                        help="create a login (password read from stdin) and exit")
    parser.add_argument("--role", choices=("dispatcher", "admin"), default="dispatcher", help="role for --add-user")


def _add_user(args: argparse.Namespace) -> int:
    from emon_core.settings import CassandraSettings, load
    from map_ui.auth import hash_password
    from map_ui.models import UserCreate
    from map_ui.repository import Repository, connect

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    body = UserCreate(username=args.add_user, password=password, role=args.role)
    repo = Repository(connect(load(CassandraSettings)))
    if not repo.create_user(body.username, hash_password(body.password), body.role):
        print(f"user {body.username} already exists", file=sys.stderr)
        return 1
    print(f"created {body.role} {body.username}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.add_user:
        return _add_user(args)
    import uvicorn

    from emon_core.settings import load
    from map_ui.app import create_app
    from map_ui.settings import MapSettings

    settings = load(MapSettings)
    app = create_app(settings)
    uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port, log_level="info",
                proxy_headers=False, server_header=False)
    return 0
