#!/usr/bin/env python3
"""CDK entry point (`npx cdk synth|deploy`): configuration comes from cdk.json's context (vidpipe:*)."""
import sys
from pathlib import Path

# The Kubernetes charts (cdk8s_app/) use the services' contract package for topic defaults.
sys.path.insert(0, str(Path(__file__).resolve().parent / "services" / "shared"))

import aws_cdk as cdk  # noqa: E402

from cdk_app.app import build_platform  # noqa: E402
from cdk_app.config import ConfigError  # noqa: E402
from cdk_app.constructs.model_artifact import ModelMissingError  # noqa: E402

app = cdk.App()
try:
    build_platform(app)
except (ConfigError, ModelMissingError) as exc:
    # A configuration problem, not a bug: the message names the context key; no traceback.
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
app.synth()
