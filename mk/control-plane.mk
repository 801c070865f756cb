# A real Kubernetes control plane for the charts' tests (tests/k8s/test_control_plane*.py, tools/k8s):
# kube-apiserver, kube-controller-manager and kube-scheduler at the version EKS runs, kwok's controller (fake
# nodes), KEDA's operator and metrics API server at the chart's version, all built from the Go module proxy
# with the pinned wrapper modules in tools/k8s/go, and etcd at the version Kubernetes pins. Binaries in .cache/k8s/bin, Go's module
# and build caches where Go keeps them; a stamp per module, so a second run is a no-op.
#   make k8s-deps
K8S_CACHE := $(CACHE)/k8s
K8S_BIN := $(K8S_CACHE)/bin
K8S_GO := tools/k8s/go
# The builds share two cores with whatever else runs: they yield to it.
GO_BUILD := nice -n 19 go build -trimpath -buildvcs=false
KUBE_GIT_VERSION = $(shell awk '$$1 == "require" && $$2 == "k8s.io/kubernetes" {print $$3}' $(K8S_GO)/go.mod)
KUBE_LDFLAGS = -s -w $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
  -X $(pkg).gitVersion=$(KUBE_GIT_VERSION) -X $(pkg).gitMajor=$(word 1,$(subst ., ,$(KUBE_GIT_VERSION:v%=%))) \
  -X $(pkg).gitMinor=$(word 2,$(subst ., ,$(KUBE_GIT_VERSION:v%=%))))
KEDA_VERSION = $(shell awk '$$1 == "require" && $$2 == "github.com/kedacore/keda/v2" {print $$3}' $(K8S_GO)/keda/go.mod)
# Module files the tests read at run time: kwok's node and pod lifecycle stages, KEDA's CRDs
KWOK_STAGES := node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
  pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml

.PHONY: k8s-deps
k8s-deps: $(K8S_CACHE)/.kubernetes $(K8S_CACHE)/.kwok $(K8S_CACHE)/.keda-crds $(K8S_CACHE)/.keda

# Debian's etcd (3.4.23) predates the progress notifications that the API server needs to serve the
# streaming lists that client-go 1.35+ asks for (kwok then misses pod events): etcd is built too.
$(K8S_CACHE)/.kubernetes: $(K8S_GO)/go.mod $(K8S_GO)/go.sum $(K8S_GO)/cmd/etcd/main.go
	@mkdir -p $(K8S_BIN)
	cd $(K8S_GO) && for cmd in kube-apiserver kube-controller-manager kube-scheduler; do \
	  s=$$(date +%s); $(GO_BUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $(K8S_BIN))/$$cmd k8s.io/kubernetes/cmd/$$cmd \
	    || exit 1; echo "$$cmd $(KUBE_GIT_VERSION): $$(( $$(date +%s) - s )) s"; done
	cd $(K8S_GO) && s=$$(date +%s) && $(GO_BUILD) -ldflags "-s -w" -o $(abspath $(K8S_BIN))/etcd ./cmd/etcd && \
	  echo "etcd $$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3): $$(( $$(date +%s) - s )) s"
	@touch $@

$(K8S_CACHE)/.kwok: $(K8S_GO)/kwok/go.mod $(K8S_GO)/kwok/go.sum
	@mkdir -p $(K8S_BIN)
	cd $(K8S_GO)/kwok && s=$$(date +%s) && $(GO_BUILD) -ldflags "-s -w" -o $(abspath $(K8S_BIN))/kwok \
	  sigs.k8s.io/kwok/cmd/kwok && echo "kwok: $$(( $$(date +%s) - s )) s"
	cd $(K8S_GO)/kwok && dir=$$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) && \
	  for stage in $(KWOK_STAGES); do cat $$dir/kustomize/stage/$$stage; echo ---; done > $(abspath $(K8S_CACHE))/kwok-stages.yaml
	@touch $@

$(K8S_CACHE)/.keda: $(K8S_GO)/keda/go.mod $(K8S_GO)/keda/go.sum
	@mkdir -p $(K8S_BIN)
	cd $(K8S_GO)/keda && for cmd in operator adapter; do \
	  s=$$(date +%s); $(GO_BUILD) -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$(KEDA_VERSION:v%=%)" \
	    -o $(abspath $(K8S_BIN))/keda-$$cmd github.com/kedacore/keda/v2/cmd/$$cmd \
	    || exit 1; echo "keda-$$cmd $(KEDA_VERSION): $$(( $$(date +%s) - s )) s"; done
	@touch $@

# KEDA's CRDs need only its module's source, not the build
$(K8S_CACHE)/.keda-crds: $(K8S_GO)/keda/go.mod $(K8S_GO)/keda/go.sum
	@mkdir -p $(K8S_CACHE)/keda-crds
	cd $(K8S_GO)/keda && go mod download github.com/kedacore/keda/v2 && dir=$$(go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2) && \
	  rm -f $(abspath $(K8S_CACHE))/keda-crds/*.yaml && cp $$dir/config/crd/bases/*.yaml $(abspath $(K8S_CACHE))/keda-crds/ && \
	  chmod u+w $(abspath $(K8S_CACHE))/keda-crds/*.yaml
	@touch $@

# make test builds the control plane its tests start
test: k8s-deps
