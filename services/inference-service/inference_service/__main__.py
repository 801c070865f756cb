"""python -m inference_service: serve the API (INFERENCE_PORT) and the probes and metrics
(INFERENCE_OPS_PORT) with settings from INFERENCE_* variables; from INFERENCE_PROCESSES processes, one
by default per CPU of the pod's limit (serving.py). Exit codes: 0 stopped (SIGTERM), 1 a port could not be
bound, 2 bad configuration (the variable named)."""

from __future__ import annotations

import os
import sys
import threading

from vidpipe import tracing
from vidpipe.config import ConfigurationError, load_settings
from vidpipe.http_edge import EdgeServers, api_config, ops_config
from vidpipe.logs import configure_logging
from vidpipe.secrets import SecretError

from .cpu import cpu_limit
from .serving import (
    CONNECTION_MAX_AGE_S,
    GRACEFUL_S,
    Supervisor,
    lifeline,
    processes_for,
    report,
    worker_number,
    worker_setup,
)
from .settings import InferenceSettings


def run_worker(settings: InferenceSettings, token: str | None, worker: int) -> None:
    """One of several serving processes (serving.py): the API on the supervisor's listening socket, once the
    model is loaded (reported to the supervisor before the first connection is accepted). A model that fails
    to load is reported, and the worker exits 3 (uvicorn's start-up failure) having accepted nothing."""
    from .app import ServiceState, create_app

    listener, status = worker_setup(worker)

    def loaded(state: ServiceState) -> None:
        model = state.model
        report(status, {"model": model.name, "version": model.version} if model else None, state.load_error)
        if model is None:
            os._exit(3)  # its error is logged and reported: unwinding the servers would only add tracebacks

    app = create_app(settings, token, loaded=loaded)
    # log_config=None: uvicorn's lines too reach the root logger's handler, which names the worker.
    config = api_config(app, settings, settings.host, settings.port, settings.log_level, GRACEFUL_S,
                        connection_max_age_s=CONNECTION_MAX_AGE_S, log_config=None)  # fmt: skip
    servers = EdgeServers(config, None, sockets=[listener])
    threading.Thread(target=lifeline, args=(status, servers.stop), name="lifeline", daemon=True).start()
    servers.run()


def main() -> None:
    settings = load_settings(InferenceSettings)
    configure_logging(settings.log_level, settings.log_format)
    tracing.setup("inference-service")
    try:
        token = settings.resolve_token()
    except (SecretError, ValueError) as exc:
        print(f"invalid configuration:\n  {exc}", file=sys.stderr)
        raise ConfigurationError(2) from None
    worker = worker_number()
    if worker is not None:
        run_worker(settings, token, worker)
        return
    cpus = cpu_limit()
    processes = processes_for(settings, cpus)
    if processes > 1:
        # The supervisor loads no model (nor the app's modules): its memory stays small.
        sys.exit(Supervisor(settings, processes, cpus).run())

    from .app import create_app, create_ops_app

    app = create_app(settings, token)
    servers = EdgeServers(
        # SIGTERM: finish in-flight requests (up to 30 s), then stop; exit 0.
        api_config(app, settings, settings.host, settings.port, settings.log_level, graceful_s=GRACEFUL_S),
        ops_config(create_ops_app(app.state.service), settings, settings.host, settings.ops_port, settings.log_level),
    )
    servers.run()


if __name__ == "__main__":
    main()
