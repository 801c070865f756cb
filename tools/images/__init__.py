"""The service images without a Docker engine: podman (Debian) with a private configuration, a Python
base built from Debian packages where no registry is reachable, images built exactly as the CDK assets
define them, and containers run under their Deployment's security context."""
