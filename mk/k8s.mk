# Kubernetes manifests with cdk8s (cdk8s.yaml, cdk8s_app/): synthesize dist/*.k8s.yaml from a
# `cdk deploy --outputs-file` JSON, then validate every object offline.
#   make k8s                                        # the committed sample (fake values)
#   make k8s OUTPUTS=cdk-outputs.json               # a real deployment's outputs
#   make k8s OUTPUTS=... K8S_SETTINGS=my.yaml       # other streams / scaling knobs
OUTPUTS ?= cdk8s_app/sample-outputs.json
K8S_SETTINGS ?= cdk8s_app/settings.yaml
K8S_OUT := dist
# jsii's Node end-of-life banner on every synth says nothing about the manifests.
K8S_QUIET := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20,22 JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1

.PHONY: k8s k8s-import

k8s: node_modules $(VENV)/.installed
	rm -rf $(K8S_OUT)
	VIDPIPE_OUTPUTS_FILE=$(abspath $(OUTPUTS)) VIDPIPE_K8S_SETTINGS=$(abspath $(K8S_SETTINGS)) \
	  $(K8S_QUIET) \
	  npx --no-install cdk8s synth --no-check-upgrade --output $(K8S_OUT)
	$(PY) -m cdk8s_app.validate $(K8S_OUT)

# Regenerate the typed KEDA constructs (committed) from the vendored CRD; offline.
k8s-import: node_modules
	$(K8S_QUIET) \
	  npx --no-install cdk8s import --no-check-upgrade --language python --output cdk8s_app/imports
