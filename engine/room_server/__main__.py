"""reactdiff-room: the built-in room server. Prints its rooms' URLs and how to make more; runs until Ctrl-C.

reactdiff-room                                     # http://127.0.0.1:8080/r/ROOM?token=...
reactdiff-room --host 0.0.0.0 --self-signed        # a LAN: https with a self-signed certificate
reactdiff-room --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
reactdiff-room --room-id standup --token "$TOKEN"   # the same room URL after a restart: the engine rejoins
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import socket
import sys

from engine.interrupt import POLL_S, Interrupted, StopSignals
from engine.room_server.server import RoomServer, ServerConfig
from engine.room_server.tls import fingerprint, load_context, self_signed_context
from engine.rooms.urls import ROOM_ID_RE, TOKEN_RE

PROG = "reactdiff-room"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n")[0],
        epilog="Ctrl-C or SIGTERM closes the rooms (participants are told) and exits with 130 (Ctrl-C) or 143 "
        "(SIGTERM); a second Ctrl-C quits at once. A mistake in the options: one line, exit 2.",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port)")
    parser.add_argument("--public-host", help="host name or IP to print in room URLs (default: --host, or this "
                        "machine's name when listening on 0.0.0.0)")  # fmt: skip
    parser.add_argument("--tls-cert", help="PEM certificate (https/wss); needs --tls-key")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--self-signed", action="store_true", help="serve https with a fresh self-signed "
                        "certificate (a LAN without a real one: browsers warn once)")  # fmt: skip
    parser.add_argument("--rooms", type=int, default=1, help=f"rooms to create at start, 1 to "
                        f"{ServerConfig.max_rooms} (default 1; more on demand: see the line printed)")  # fmt: skip
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds a room lives once its last "
                        "participant left (default 600); a room nobody joined yet stays")  # fmt: skip
    parser.add_argument("--max-participants", type=int, default=8, help="per room (full mesh; default 8)")
    parser.add_argument("--allow-origin", action="append", default=[], help="another web origin allowed to "
                        "open the signaling WebSocket (repeatable)")  # fmt: skip
    parser.add_argument("--room-id", help="the first room's id (4-64 of A-Z a-z 0-9 _ -; default: random); with "
                        "--token, its URL stays the same across restarts and the engine rejoins")  # fmt: skip
    parser.add_argument("--token", help="the first room's token (16-128 of A-Z a-z 0-9 _ -; default: random)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too (rooms made and "
                        "expired, joins and leaves are logged anyway)")  # fmt: skip
    return parser


def _first_room(args: argparse.Namespace) -> tuple[str, str] | tuple[()]:
    """(id, token) of the first room from --room-id/--token, or () for random ones."""
    if bool(args.room_id) != bool(args.token):
        raise ValueError("give --room-id and --token together (a fixed room URL needs both)")
    if not args.room_id:
        return ()
    if args.rooms < 1:
        raise ValueError("--room-id needs at least one room (--rooms 1 or more)")
    if not ROOM_ID_RE.match(args.room_id):
        raise ValueError(f"--room-id {args.room_id!r}: use 4 to 64 letters, digits, '_' or '-'")
    if not TOKEN_RE.match(args.token):
        raise ValueError("--token: use 16 to 128 letters, digits, '_' or '-' (e.g. python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))')")  # fmt: skip
    return args.room_id, args.token


def _check_numbers(args: argparse.Namespace) -> None:
    """Counts and times that cannot work: no room, a room for nobody, an empty room that lives no time."""
    if not 1 <= args.rooms <= ServerConfig.max_rooms:
        raise ValueError(f"--rooms {args.rooms}: create 1 to {ServerConfig.max_rooms} rooms at start")
    if args.max_participants < 1:
        raise ValueError(f"--max-participants {args.max_participants}: allow at least 1")
    if not args.idle_timeout > 0:
        raise ValueError(f"--idle-timeout {args.idle_timeout}: give a positive number of seconds")


def _config(args: argparse.Namespace) -> tuple[ServerConfig, str | None]:
    """The server's configuration (with a fresh admin token) and, with --self-signed, its certificate's
    fingerprint."""
    _check_numbers(args)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("give --tls-cert and --tls-key together")
    if args.self_signed and args.tls_cert:
        raise ValueError("--self-signed and --tls-cert exclude each other")
    public = args.public_host or (socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host)
    context, print_fp = None, None
    if args.tls_cert:
        context = load_context(args.tls_cert, args.tls_key)
    elif args.self_signed:
        hosts = list(dict.fromkeys([public, args.host, "localhost", "127.0.0.1"]))
        context, cert_pem = self_signed_context([h for h in hosts if h not in ("0.0.0.0", "::")])
        print_fp = fingerprint(cert_pem)
    config = ServerConfig(
        host=args.host, port=args.port, public_host=public, idle_timeout_s=args.idle_timeout,
        max_participants=args.max_participants, allowed_origins=tuple(args.allow_origin), ssl_context=context,
        admin_token=secrets.token_urlsafe(24),
    )  # fmt: skip
    return config, print_fp


async def _serve(config: ServerConfig, rooms: int, fingerprint: str | None, first: tuple[str, str] | tuple[()]) -> None:
    server = RoomServer(config)
    # the rooms exist before the port opens: an engine reconnecting to a restarted server never finds its room gone
    created = [server.create_room(*(first if k == 0 else ())) for k in range(rooms)]
    await server.start()
    try:
        if fingerprint:
            print(f"self-signed certificate, SHA-256 fingerprint {fingerprint}")
        for room in created:
            print(f"room: {room.url(server.base_url)}", flush=True)
        insecure = "-k " if fingerprint else ""  # curl and a self-signed certificate
        print(f"more rooms: curl {insecure}-X POST -H 'Authorization: Bearer {config.admin_token}' "
              f"{server.base_url}/api/rooms", flush=True)  # fmt: skip
        with StopSignals(PROG) as stop:
            while not stop.requested.is_set():  # the signal handler only sets the event
                await asyncio.sleep(POLL_S)
    finally:
        await server.stop()
    raise stop.interrupted()  # exit 130 for Ctrl-C, 143 for SIGTERM (as reactdiff-engine)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    try:
        config, fingerprint = _config(args)
        asyncio.run(_serve(config, args.rooms, fingerprint, _first_room(args)))
    except KeyboardInterrupt as exc:  # a Ctrl-C before the server waits for one is 130 too
        return exc.exit_status if isinstance(exc, Interrupted) else 128 + signal.SIGINT
    except (ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
