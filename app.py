#!/usr/bin/env python3
"""CDK entry point (`npx cdk synth|deploy`): configuration comes from cdk.json's context (vidpipe:*)."""

import sys

import aws_cdk as cdk

from cdk_app.app import build_platform
from cdk_app.config import ConfigError
from cdk_app.constructs.model_artifact import ModelMissingError

app = cdk.App()
try:
    build_platform(app)
except (ConfigError, ModelMissingError) as exc:
    # A configuration problem, not a bug: the message names the context key; no traceback.
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
app.synth()
