"""`reactdiff-serve` (also `reactdiff-engine serve`): one process, many calls, one batched model.

    reactdiff-serve --host 127.0.0.1 --port 8090                  # prints its token, the limits and a curl line
    curl -X POST -H "Authorization: Bearer $TOKEN" -d '{"room": "http://HOST:8080/r/ROOM?token=..."}' \\
        http://127.0.0.1:8090/v1/sessions
    reactdiff-serve --service ray [--ray-address auto] [--ray-replicas 2]    # batches through Ray Serve

At start it loads the model into the inference service, measures what a batch, a tracked video frame and an
avatar frame cost on this machine (a few seconds), and from that the admission limits; then it serves the API
(engine.serving.api) until Ctrl-C or SIGTERM, which leave every room and exit 130 or 143. A mistake in the
arguments, a missing model or a service that cannot start is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.interrupt import Interrupted, StopSignals

log = logging.getLogger(__name__)

PROG = "reactdiff-serve"
POLL_S = 0.1


class UserError(Exception):
    """A mistake the user can fix: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from engine.backends import AUTO, BackendKind
    from engine.serving.service import ServiceKind

    p = argparse.ArgumentParser(prog=PROG, description="Serve listener avatars to many calls from one process: an "
                                "HTTP API creates, lists and stops sessions; their windows run batched.")  # fmt: skip
    api = p.add_argument_group("API")
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8090, help="TCP port (default 8090; 0: any free port)")
    api.add_argument("--token", help="the API's bearer token, 16+ characters (default: a new one, printed)")
    model = p.add_argument_group("model and batching")
    model.add_argument("--model", type=Path, metavar="DIR", help="model directory (default: the shipped base model)")
    model.add_argument("--backend", default=AUTO, choices=[AUTO, *(k.value for k in BackendKind)])
    model.add_argument("--threads", type=int, default=1, help="intra-op threads of the backend (default 1)")
    model.add_argument("--steps", type=int, metavar="K", help="sampler steps per window (default: the model's)")
    model.add_argument("--sampler", choices=["ddim", "dpmpp2m"], help="sampler (default: the model's)")
    model.add_argument("--hop", type=int, metavar="H", help="frames between windows (default: the model's)")
    model.add_argument("--service", default="in-process", choices=[k.value for k in ServiceKind],
                       help="where batches run: in this process (default) or a Ray Serve deployment")  # fmt: skip
    model.add_argument("--ray-address", help="with --service ray: a running cluster ('auto', ray://HOST:10001); "
                       "default: start Ray on this machine")  # fmt: skip
    model.add_argument("--ray-replicas", type=int, default=1, help="with --service ray: replicas (default 1)")
    model.add_argument("--gather-ms", type=float, default=40.0,
                       help="longest a window waits for others to batch with (default 40)")  # fmt: skip
    model.add_argument("--max-batch", type=int, default=16, help="windows per batched call at most (default 16)")
    model.add_argument("--buckets", help="pad batches to these sizes, e.g. 1,2,4,8,16 (static shapes: one CUDA "
                       "graph each; default: powers of two on torch-cuda and tensorrt, none elsewhere)")  # fmt: skip
    sessions = p.add_argument_group("sessions")
    sessions.add_argument("--size", default="640x480", metavar="WxH", help="avatar size (default 640x480)")
    sessions.add_argument("--max-sessions", type=int, default=100, help="a hard cap on sessions (default 100)")
    sessions.add_argument("--cores", type=float, help="CPU cores the sessions may use (default: all)")
    sessions.add_argument("--no-video", action="store_true", help="audio-only sessions only (no face tracker)")
    sessions.add_argument("--face-model", type=Path, metavar="PATH", help="MediaPipe face_landmarker.task")
    sessions.add_argument("--playout-delay-ms", type=float, metavar="MS", help="every session's fixed input-to-"
                          "display delay (default: adaptive, as reactdiff-engine: it lets 1 %% of frames be filled "
                          "to keep the delay low)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log what the server does")
    return p


def parse_buckets(text: str | None) -> tuple[int, ...]:
    if text is None:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--buckets {text}: give batch sizes separated by commas, e.g. 1,2,4,8,16") from None


def check_args(args: argparse.Namespace) -> None:
    """Mistakes seen from the arguments alone."""
    if args.token is not None and len(args.token) < 16:
        raise UserError("--token: use at least 16 characters (e.g. python -c 'import secrets; "
                        "print(secrets.token_urlsafe(24))')")  # fmt: skip
    for name, value, least in (
        ("--threads", args.threads, 1),
        ("--max-batch", args.max_batch, 1),
        ("--max-sessions", args.max_sessions, 1),
        ("--ray-replicas", args.ray_replicas, 1),
    ):
        if value < least:
            raise UserError(f"{name} {value}: use at least {least}")  # fmt: skip
    if not 0 <= args.gather_ms <= 1000:
        raise UserError(f"--gather-ms {args.gather_ms}: use 0 to 1000 ms (a window waits that long at most)")
    if args.playout_delay_ms is not None and args.playout_delay_ms <= 0:
        raise UserError(f"--playout-delay-ms {args.playout_delay_ms}: must be positive")
    if args.ray_address and args.service != "ray":
        raise UserError("--ray-address is for --service ray")


def open_parts(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the model directory, the inference service) or UserError."""
    from engine.backends import BackendUnavailable
    from engine.model_dir import ModelDirError, load_model_dir
    from engine.models import default_model_dir
    from engine.serving.service import BackendSettings, ServiceUnavailable, create_service

    path = args.model or default_model_dir()
    if path is None:
        raise UserError("this installation carries no default model: pass --model DIR")
    settings = BackendSettings(args.backend, args.steps, args.sampler, args.threads)
    options = {"address": args.ray_address, "replicas": args.ray_replicas} if args.service == "ray" else {}
    try:
        model = load_model_dir(path)
        return model, create_service(args.service, model, settings, **options)
    except (ModelDirError, BackendUnavailable, ServiceUnavailable, ValueError) as exc:
        raise UserError(str(exc)) from None


def make_server(args: argparse.Namespace, model: Any, service: Any) -> Any:
    """The API over a session manager, its scheduler and the admission limits measured here."""
    from engine.serving.admission import Capacity, CapacityConfig, measure_costs
    from engine.serving.api import ServeAPI
    from engine.serving.metrics import ServeMetrics
    from engine.serving.scheduler import BatchScheduler, SchedulerConfig, default_buckets
    from engine.serving.sessions import SessionDefaults, SessionManager
    from engine.tracker import FaceModelError
    from engine.windows import check_hop
    from renderer.sinks import parse_size

    try:
        size = parse_size(args.size)
        if args.hop is not None:
            check_hop(args.hop, model.window, "--hop")
        buckets = parse_buckets(args.buckets) if args.buckets else default_buckets(service.backend_name, args.max_batch)
        config = SchedulerConfig(args.gather_ms / 1000, args.max_batch, buckets)
        costs = measure_costs(service, size=size, video=not args.no_video, face_model=args.face_model,
                              max_batch=args.max_batch)  # fmt: skip
    except (ValueError, FaceModelError) as exc:
        raise UserError(str(exc)) from None
    cores = CapacityConfig.cores if args.cores is None else args.cores
    limits = CapacityConfig(cores=cores, max_sessions=args.max_sessions, video=not args.no_video)
    capacity = Capacity(costs, limits, hop=args.hop or model.hop, scheduler=config)
    scheduler = BatchScheduler(service, config)
    delay_s = None if args.playout_delay_ms is None else args.playout_delay_ms / 1000
    defaults = SessionDefaults(size=size, hop=args.hop, face_model=args.face_model, playout_delay_s=delay_s)
    manager = SessionManager(model, scheduler, capacity, defaults)
    metrics = ServeMetrics(sessions=manager.figures, queue_depth=lambda: scheduler.queue_depth,
                           limits=capacity.limits())  # fmt: skip
    scheduler.observers.append(metrics.observe_batch)
    return ServeAPI(manager, metrics, args.token or secrets.token_urlsafe(24))


async def serve(api: Any, host: str, port: int) -> None:
    """Serve until a stop signal; then leave every room."""
    from aiohttp import web

    runner = web.AppRunner(api.app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        bound = runner.addresses[0][1]
        url = f"http://{host}:{bound}"
        limits = api.manager.capacity.limits()
        print(f"{PROG}: {url} (token {api.token}); room sessions at most: {limits['audio']} audio-only or "
              f"{limits['video']} with video tracking on this machine", flush=True)  # fmt: skip
        print(f"new session: curl -X POST -H 'Authorization: Bearer {api.token}' -d '{{\"room\": \"ROOM_URL\"}}' "
              f"{url}/v1/sessions", flush=True)  # fmt: skip
        with StopSignals(PROG) as stop:
            while not stop.requested.is_set():  # the signal handler only sets the event
                await asyncio.sleep(POLL_S)
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, shut_down, api)
    raise stop.interrupted()


def shut_down(api: Any) -> None:
    """Every session leaves its room, then the scheduler and the service stop."""
    api.close()
    api.manager.close()
    api.manager.scheduler.close()
    api.manager.scheduler.service.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")  # fmt: skip
    service = None
    try:
        check_args(args)
        model, service = open_parts(args)
        api = make_server(args, model, service)
        service = None  # the server owns it now: shut_down closes it
        asyncio.run(serve(api, args.host, args.port))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return exc.exit_status if isinstance(exc, Interrupted) else 128 + signal.SIGINT
    finally:
        if service is not None:
            service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
