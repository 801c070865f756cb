"""python -m inference_service: serve the API (INFERENCE_PORT) and the probes and metrics
(INFERENCE_OPS_PORT) with settings from INFERENCE_* variables; from INFERENCE_PROCESSES processes, one
by default per CPU of the pod's limit (serving.py). Exit codes: 0 stopped (SIGTERM), 1 a port could not be
bound, 2 bad configuration (the variable named)."""

from __future__ import annotations

import sys

from vidpipe import tracing
from vidpipe.config import ConfigurationError, load_settings
from vidpipe.http_edge import EdgeServers, api_config, ops_config
from vidpipe.logs import configure_logging
from vidpipe.secrets import SecretError

from .cpu import cpu_limit
from .serving import GRACEFUL_S, Supervisor, processes_for, run_worker, worker_number
from .settings import InferenceSettings


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
