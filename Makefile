# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Everything fetched (virtualenv, broker, model, sample video, npm CLIs) is cached in ignored folders.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
MODEL := $(CACHE)/models/yolov4-tiny.onnx
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup venv model int8 sample broker rtsp-deps browser-deps prometheus-deps demo test test-fast test-service lint faults soak bench topics clean

help:
	@echo "make demo    stream the sample video through a local Kafka broker to the model; writes out/summary.json"
	@echo "make test    run the whole test suite (unit, integration against a real broker, end-to-end, infrastructure)"
	@echo "make faults  only the fault-injection suite, then its table (out/faults/)"
	@echo "make soak    ten minutes of chaos through the whole pipeline, then the account (README figures)"
	@echo "make bench   measure throughput and latency; writes bench/results/latest.json"
	@echo "make int8    quantize the model to int8 (NNCF) and run its accuracy gate"
	@echo "make synth   synthesize the CDK app offline (cdk.out/), with cdk-nag and cfn-lint"
	@echo "make k8s     synthesize the Kubernetes manifests with cdk8s (dist/)"
	@echo "make checkov checkov (pinned, own virtualenv) over the templates and manifests; every skip has its reason"
	@echo "make images  build the four service images from the CDK assets with podman (no Docker engine)"
	@echo "make lint    ruff (lint, format) and mypy (strict on the services)"
	@echo "make test-service SERVICE=consumer-service   one service's own tests, from its folder"
	@echo "make setup   only install and fetch (venv, model, sample video, Kafka broker)"

# Every third-party distribution comes from the hashed lock (make lock), wheels only; then the packages
# (pyproject.toml) editable, with no dependencies, no index and setuptools from the lock as their build
# backend: nothing unhashed is ever fetched. pip check: the lock satisfies every package's requirements.
$(VENV)/.installed: requirements.txt requirements.lock pyproject.toml $(wildcard services/*/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --only-binary=:all: -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-index --no-build-isolation -r requirements.txt
	$(PY) -m pip check -q
	@touch $@

venv: $(VENV)/.installed

# Locks with a sha256 for every distribution, from requirements.txt and the packages' pyproject.toml files:
# requirements.lock (the venv, any platform, Python 3.11+) and one per image, services/<service>/requirements.lock
# (its package and the contract, Linux x86_64, Python 3.11, within the venv's versions, so the tests run what
# ships), and services/build.lock (the images' build stage). Existing pins are kept unless UPGRADE=1. uv itself
# is pinned by hash (requirements-uv.txt).
# tests/unit/test_lock.py fails while a lock lags its declarations.
UV := $(CACHE)/uv/bin/uv
# Every service folder with a deploy unit has an image, so a lock.
LOCK_SERVICES := $(patsubst services/%/deploy.py,%,$(wildcard services/*/deploy.py))
LOCAL_PACKAGES := vidpipe vidpipe-platform $(addprefix vidpipe-,$(LOCK_SERVICES))
UV_COMPILE = $(UV) pip compile --quiet --generate-hashes --no-config --python-version 3.11 \
  --custom-compile-command "make lock" $(addprefix --no-emit-package ,$(LOCAL_PACKAGES)) $(if $(UPGRADE),--upgrade)
# setuptools: the packages' build backend (their build-system.requires), from the venv's lock (requirements.txt
# names it) and, for the images' build stage, from services/build.lock.
LOCK_BUILD := 'setuptools>=75'
IMAGE_PLATFORM := --python-platform x86_64-manylinux_2_28 --constraint requirements.lock

$(UV): requirements-uv.txt
	@test -x $(CACHE)/uv/bin/python || $(PYTHON) -m venv $(CACHE)/uv
	$(CACHE)/uv/bin/python -m pip install -q --require-hashes --only-binary=:all: -r requirements-uv.txt
	@touch $@

.PHONY: lock
lock: $(UV)
	$(UV_COMPILE) --universal -o requirements.lock requirements.txt
	for service in $(LOCK_SERVICES); do \
	  printf '%s\n' ./services/shared ./services/$$service | $(UV_COMPILE) $(IMAGE_PLATFORM) \
	    -o services/$$service/requirements.lock - || exit 1; \
	done
	echo $(LOCK_BUILD) | $(UV_COMPILE) $(IMAGE_PLATFORM) -o services/build.lock -

# The model, then its bf16 accuracy gate where the CPU can compute bf16 (a no-op elsewhere, and once per
# model): INFERENCE_PRECISION=auto serves bf16 only with a passed gate beside the model (tools/accuracy).
model: $(VENV)/.installed sample
	$(PY) -m tools.model.fetch_model --cache-dir $(CACHE)
	$(PY) -m tools.accuracy --model $(MODEL) --write --if-needed || [ $$? -eq 1 ]

sample: $(VENV)/.installed
	$(PY) -m tools.media.fetch_sample --cache-dir $(CACHE)

broker: $(VENV)/.installed
	$(PY) -m tools.kafka.broker fetch

setup: venv model sample broker

# GStreamer's RTSP server (Debian packages, system Python) for the live-source fault tests.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
rtsp-deps:
	@/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null || { \
	  echo "installing GStreamer's RTSP server for the live-source tests (apt)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	    gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good >/dev/null; }

# Debian's Chromium for the live view's browser test (Playwright drives it; its own browser download
# cannot run here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Chromium for the live view's browser test (apt)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Debian's Prometheus for promtool: the alert rules' checks and unit tests (tests/unit/test_alert_rules.py).
prometheus-deps:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool for the alert rules' tests (apt)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

demo: setup prometheus-deps
	$(PY) -m tools.demo

# node_modules: the pinned CDK and cdk8s CLIs (mk/node.mk); images: the four service images (mk/images.mk).
test: lint setup rtsp-deps browser-deps prometheus-deps node_modules images
	$(PY) -m pytest
# ...and checkov over the synthesized templates and manifests (mk/infra.mk).
test: checkov

# ruff (lint and format) on the whole tree, mypy strict on the contract and the services (pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The fault-injection suite alone (make test runs it too), then its table for the README.
faults: setup rtsp-deps
	$(PY) -m pytest tests/faults services/consumer-service/tests/test_consumer_faults.py
	$(PY) -m tools.harness.faults_report

# The whole pipeline under a chaos loop (kills and restarts every service, the broker once), then an
# account of every frame, archive version and analytics event; writes its figures into the README.
# make test runs a three-minute one (tests/soak).
SOAK_MINUTES ?= 10
soak: setup
	$(PY) -m tools.soak --minutes $(SOAK_MINUTES) --readme

bench: setup int8
	$(PY) -m bench.run

# The model's int8 version (NNCF post-training quantization) and its accuracy gate, for INFERENCE_PRECISION=int8
# and the bench's sweep; once per model. A failed gate (exit 1) is a verdict, not a set-up error.
int8: model
	$(PY) -m tools.quantize --if-needed || [ $$? -eq 1 ]

# Unit tests only: no broker, no model, no synth, seconds.
test-fast: venv
	$(PY) -m pytest tests/unit services -q -m "not broker and not model and not infra"

# One service's own tests (unit, integration, deploy), from its folder: make test-service SERVICE=consumer-service
test-service: setup
	$(PY) -m pytest services/$(SERVICE)/tests

topics: venv
	$(PY) -m vidpipe.topics

clean:
	rm -rf out dist cdk.out .pytest_cache

# Infrastructure targets (synth, node_modules) live beside this file.
-include mk/*.mk
