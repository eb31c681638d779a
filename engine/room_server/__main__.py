"""reactdiff-room: the built-in room server. Creates a room and prints its URL; runs until Ctrl-C.

reactdiff-room                                     # http://127.0.0.1:8080/r/ROOM?token=...
reactdiff-room --host 0.0.0.0 --self-signed        # a LAN: https with a self-signed certificate
reactdiff-room --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys

from engine.room_server.server import RoomServer, ServerConfig
from engine.room_server.tls import fingerprint, load_context, self_signed_context


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reactdiff-room", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0: any free port)")
    parser.add_argument("--public-host", help="host name or IP to print in room URLs (default: --host, or this "
                        "machine's name when listening on 0.0.0.0)")  # fmt: skip
    parser.add_argument("--tls-cert", help="PEM certificate (https/wss); needs --tls-key")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--self-signed", action="store_true", help="serve https with a fresh self-signed "
                        "certificate (a LAN without a real one: browsers warn once)")  # fmt: skip
    parser.add_argument("--rooms", type=int, default=1, help="rooms to create at start (default 1)")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds an empty room lives (default 600)")
    parser.add_argument("--max-participants", type=int, default=8, help="per room (full mesh; default 8)")
    parser.add_argument("--allow-origin", action="append", default=[], help="another web origin allowed to "
                        "open the signaling WebSocket (repeatable)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="log joins, leaves and expiries")
    return parser


def _config(args: argparse.Namespace) -> tuple[ServerConfig, str | None]:
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
    )  # fmt: skip
    return config, print_fp


async def _serve(config: ServerConfig, rooms: int, fingerprint: str | None) -> None:
    server = RoomServer(config)
    await server.start()
    try:
        if fingerprint:
            print(f"self-signed certificate, SHA-256 fingerprint {fingerprint}")
        for _ in range(rooms):
            print(f"room: {server.create_room().url(server.base_url)}", flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C only
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        config, fingerprint = _config(args)
        asyncio.run(_serve(config, args.rooms, fingerprint))
    except KeyboardInterrupt:
        return 0
    except (ValueError, OSError) as err:
        print(f"reactdiff-room: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
