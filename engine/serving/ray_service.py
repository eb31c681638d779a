"""The batched window inference in a Ray Serve deployment: past one machine.

    service = RayServeService("models/base", BackendSettings(), replicas=2)             # a local Ray, started here
    service = RayServeService("models/base", BackendSettings(), address="auto")         # a running Ray cluster
    frames = service.run_batch(*arrays)                                                 # one replica runs the batch

Each replica is a Ray actor holding one engine.backends Backend; a batch goes to a replica through a
DeploymentHandle (numpy arrays through Ray's object store), so the replicas can sit on other machines of a Ray
cluster (each needs this package installed and the model directory at the same path). The batching itself is the
scheduler's (engine.serving.scheduler): Serve routes whole batches and scales replicas, and every replica returns
exactly what the in-process backend would. Serve runs without its HTTP proxy: nothing but the handle reaches it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.model_dir import ModelDir
from engine.serving.service import BackendSettings, InferenceService, ServiceKind, ServiceUnavailable

log = logging.getLogger(__name__)

DEPLOYMENT = "reactdiff-windows"
START_TIMEOUT_S = 120.0  # a replica loads the model and its runtime: seconds; a cold Ray start: about 10 s here
BATCH_TIMEOUT_S = 30.0  # a batch that has not come back by then is an error, not a wait


class WindowReplica:
    """What one Ray Serve replica runs: a backend, one batch per call (Ray calls it from its own process)."""

    def __init__(self, model_path: str, settings: BackendSettings) -> None:
        self.backend = settings.open(model_path)

    def run(self, arrays: tuple[NDArray[np.float32], ...]) -> NDArray[np.float32]:
        """Listener frames (B, W, 83) of one batch (WindowFn arguments)."""
        return self.backend.run_window(*arrays)

    def backend_name(self) -> str:
        return self.backend.name


class RayServeService(InferenceService):
    """Batches through a Ray Serve application of `replicas` WindowReplica actors."""

    kind = ServiceKind.RAY

    def __init__(
        self, model: ModelDir | str | Path, settings: BackendSettings, *, address: str | None = None,
        replicas: int = 1, cpus_per_replica: float = 1.0,
    ) -> None:  # fmt: skip
        """`address`: None starts a Ray on this machine for this process (stopped by close()); "auto" or
        "ray://HOST:10001" joins a running cluster."""
        super().__init__(model, settings)
        if replicas < 1:
            raise ValueError(f"replicas={replicas}: use at least 1")
        import ray
        from ray import serve

        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            self._init_ray(address)
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        self.app_name = f"{DEPLOYMENT}-{secrets.token_hex(4)}"
        deployment: Any = serve.deployment(
            WindowReplica, name=DEPLOYMENT, num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica}
        )
        try:
            self._handle: Any = serve.run(
                deployment.bind(str(self.model.path), settings), name=self.app_name, route_prefix=None
            )
            self._backend = str(self._handle.backend_name.remote().result(timeout_s=START_TIMEOUT_S))
        except Exception:
            self.close()
            raise
        log.info("Ray Serve application %s: %d replica(s) of %s", self.app_name, replicas, self._backend)

    @staticmethod
    def _init_ray(address: str | None) -> None:
        import ray

        try:
            ray.init(
                address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                log_to_driver=False, configure_logging=False, logging_level=logging.WARNING,
            )  # fmt: skip
        except ConnectionError as exc:
            raise ServiceUnavailable(
                f"cannot reach the Ray cluster at {address!r} ({exc}); start it with `ray start --head` or leave "
                "the address out to run Ray here"
            ) from None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
            return 'Ray Serve is not installed: pip install "reactdiff-live[ray]" (or "ray[serve]")'
        return None

    @property
    def backend_name(self) -> str:
        return self._backend

    def _run(self, *arrays: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self._handle.run.remote(arrays).result(timeout_s=BATCH_TIMEOUT_S), np.float32)

    def close(self) -> None:
        """Delete the application; stop Ray if this service started it. Safe twice."""
        if self.closed:
            return
        super().close()
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            serve.delete(self.app_name)
        finally:
            if self._started_ray:
                serve.shutdown()
                ray.shutdown()
