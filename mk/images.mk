# The service images, built as `cdk deploy` builds them (from the image assets that `make synth` stages
# in cdk.out/) but with podman from Debian, no Docker engine and no registry: the Python base is built
# from Debian packages (tools/images/base.py) and cached. podman's configuration and storage stay
# under .cache/containers; the machine's are never touched.
.PHONY: container-deps images

container-deps:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { \
	  echo "installing podman, runc and mmdebstrap for the image builds and tests (apt)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	    podman runc mmdebstrap uidmap >/dev/null; }

# BASE=registry builds on the Dockerfile's default base image instead (needs a registry).
BASE ?= local
images: container-deps synth
	$(PY) -m tools.images.build --assembly $(CDK_OUT) --base $(BASE)
