# Rebound — the project's vocabulary. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help install install-gui test-tools lock test lint demo bench bench-peers bench-view bench-operator screenshots clean install-kubectl-plugin \
	cluster-up cluster-down e2e-local

help:  ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# pip-tools resolves each extra of pyproject.toml (plus requirements/build.in) with hashes;
# peer and operator under test.txt's pins, so a package has one version everywhere.
LOCK_DIR := requirements
LOCK_VENV := build/lock-venv
PIP_TOOLS_VERSION ?= 7.6.2
UPGRADE ?=
LOCK_FLAGS = --quiet --generate-hashes --strip-extras --no-emit-find-links \
	--unsafe-package rebound $(if $(UPGRADE),--upgrade)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Every dependency (pip and setuptools too) comes from the hash-checked lock; the project
# itself is installed without dependencies or build isolation, so nothing unpinned is fetched.
install: $(PY)  ## create .venv and install the project (editable) with the pinned test extras
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK_DIR)/test.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check

# The GUI build of OpenCV (opencv-python) in place of the headless one, for --display: its own
# venv, so `make install` stays headless (and CI tests both). The window is opened before
# aiortc is imported (peers/display.py). Same lock, one swap: requirements/gui.txt.
GUI_VENV ?= .venv-gui
GUI_PY := $(GUI_VENV)/bin/python

install-gui:  ## .venv-gui: the project like `make install`, with OpenCV's GUI build (for --display)
	test -x $(GUI_PY) || $(PYTHON) -m venv $(GUI_VENV)
	$(GUI_PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK_DIR)/test.txt
	$(GUI_PY) -m pip uninstall --quiet -y opencv-python-headless
	$(GUI_PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK_DIR)/gui.txt
	$(GUI_PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(GUI_PY) -c 'import cv2, sys; gui = [l for l in cv2.getBuildInformation().splitlines() if l.strip().startswith("GUI:")]; print("OpenCV", cv2.__version__, gui[0].strip() if gui else "GUI: ?")'

test-tools:  ## Debian packages the browser, display and compose tests use (chromium, xvfb, docker-compose; root)
	scripts/install-test-tools.sh

lock:  ## re-pin requirements/*.txt (hashed) from pyproject.toml; UPGRADE=1 takes the newest releases
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet pip-tools==$(PIP_TOOLS_VERSION)
	cd $(LOCK_DIR) && for extra in test peer operator gui; do \
		if [ $$extra = test ]; then constraint=; else constraint="-c test.txt"; fi; \
		env -u PIP_FIND_LINKS CUSTOM_COMPILE_COMMAND="make lock" ../$(LOCK_VENV)/bin/pip-compile $(LOCK_FLAGS) --extra $$extra \
			$$constraint -o $$extra.txt ../pyproject.toml build.in 2>../$(LOCK_VENV)/pip-compile.log \
			|| { tail -20 ../$(LOCK_VENV)/pip-compile.log >&2; exit 1; }; \
	done
	rm -rf $(LOCK_VENV)
	@grep -cE '^[a-z0-9]' $(LOCK_DIR)/{test,peer,operator,gui}.txt

test:  ## run the test suite (the README's test command)
	$(PY) -m pytest $(PYTEST_ARGS)

ACTIONLINT ?= github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

lint:  ## ruff + mypy + actionlint (built from the Go module proxy once, cached)
	$(VENV)/bin/ruff check peers operator tests bench e2e
	$(VENV)/bin/ruff format --check peers operator tests bench e2e
	$(VENV)/bin/mypy peers operator/rebound_operator e2e/localcluster e2e/capacity.py e2e/kindnode
	@actionlint="$$(scripts/go-tool.sh install $(ACTIONLINT))" && echo "actionlint .github/workflows" && "$$actionlint"

demo:  ## a ~10 s local session, both peers on 127.0.0.1, printing the summary
	$(PY) -m bench.demo

bench: bench-peers bench-view bench-operator  ## all benchmarks (prints Markdown tables)

bench-peers:  ## detector throughput + full sessions
	$(PY) -m bench.peers

screenshots:  ## docs/images/live-view.png and report.png from a real session (headless Chromium)
	$(PY) -m bench.screenshots

bench-view:  ## what the live view costs a session: no view / view unwatched / one Chromium viewer (needs chromium)
	$(PY) -m bench.viewer

bench-operator:  ## 100 BallSessions: emulated and (after make cluster-up) real API server; memory with 10k+10k unrelated objects
	$(PY) -m bench.operator

PLUGIN_DIR ?= $(HOME)/.local/bin

install-kubectl-plugin: $(PY)  ## install `kubectl rebound report NAME` (a BallSession's report) into PLUGIN_DIR (default ~/.local/bin)
	mkdir -p $(PLUGIN_DIR)
	printf '#!/bin/sh\n# kubectl rebound report NAME [-n NS] [-o PATH]: docs/observability.md (make install-kubectl-plugin)\nexec "%s" -m rebound_operator.report --kubectl-plugin "$$@"\n' \
		"$(abspath $(PY))" > $(PLUGIN_DIR)/kubectl-rebound
	chmod 755 $(PLUGIN_DIR)/kubectl-rebound
	@echo "installed $(PLUGIN_DIR)/kubectl-rebound (kubectl finds it on PATH)"

clean:  ## remove the virtualenv and caches (not the control-plane binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# ---- containers, kind, e2e (see docs/install.md) -------------------------------------
VERSION ?= 0.1.0
BASE_IMAGE ?= python:3.11.10-slim-bookworm
PEER_IMAGE ?= rebound-peer:$(VERSION)
OPERATOR_IMAGE ?= rebound-operator:$(VERSION)
PIP_CA_BUNDLE ?=
KIND_CLUSTER ?= rebound
# A node image of your own (e.g. kindest/node:v1.37.x); empty: the one `make kind-image` builds.
KIND_NODE_IMAGE ?=
# A kind CLI of your own; empty: kind v0.33.0 built here from the Go module proxy.
KIND ?=
KUBECTL ?= kubectl
KEEP ?=
KIND_ARGS = --name $(KIND_CLUSTER) $(if $(KIND),--kind $(KIND))
KIND_KUBECONFIG = $(CURDIR)/.kind/kubeconfig
KIND_ENV = KUBECONFIG=$(KIND_KUBECONFIG) PATH=$(CLUSTER_BIN):$$PATH

.PHONY: base-image images image-peer image-operator container-test kind-image kind-up kind-down \
	kind-load deploy undeploy e2e

base-image:  ## local Debian base image (debootstrap + docker import) for registry-less machines
	scripts/base-image.sh rebound-base:bookworm

# PIP_CA_BUNDLE is copied into the build context for the builder stage only (see
# docker/install.sh) and removed again however the build ends; the images never contain it.
define build_image
	@set -e; trap 'rm -f docker/ca/extra-ca.pem' EXIT; \
	if [ -n "$(PIP_CA_BUNDLE)" ]; then cp "$(PIP_CA_BUNDLE)" docker/ca/extra-ca.pem; fi; \
	echo "docker build -f $(1) -t $(2) --build-arg BASE_IMAGE=$(BASE_IMAGE)"; \
	docker build -f $(1) -t $(2) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		$(if $(PIP_CA_BUNDLE),--build-arg PIP_CA_BUNDLE=extra-ca.pem) .
endef

image-peer:
	$(call build_image,Dockerfile.peer,$(PEER_IMAGE))

image-operator:
	$(call build_image,Dockerfile.operator,$(OPERATOR_IMAGE))

# The local base image is built first when the images are to be built on it.
images: $(if $(filter rebound-base:%,$(BASE_IMAGE)),base-image) image-peer image-operator  ## build both images (BASE_IMAGE=..., PIP_CA_BUNDLE=..., PEER_IMAGE=..., OPERATOR_IMAGE=...)
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'rebound-(peer|operator):'

REGISTRY ?= ghcr.io/rebound-dev
.PHONY: install-yaml
install-yaml:  ## print the install YAML for $(REGISTRY)/rebound-{operator,peer}:$(VERSION) (what a release attaches)
	@scripts/render-install.sh $(REGISTRY) $(VERSION)

container-test:  ## the images for real: operator container + peer containers on the emulator (needs `make images`)
	PEER_IMAGE=$(PEER_IMAGE) OPERATOR_IMAGE=$(OPERATOR_IMAGE) PIP_CA_BUNDLE=$(PIP_CA_BUNDLE) \
		$(PY) -m pytest e2e/test_containers.py -v

kind-image:  ## build the kind node image here (root; nothing pulled; docs/install.md)
	nice -n 15 $(PY) -m kindnode image

kind-up:  ## two-node kind cluster from the node image built here (or KIND_NODE_IMAGE); .kind/kubeconfig
	nice -n 15 $(PY) -m kindnode up $(KIND_ARGS) $(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))

kind-down:  ## delete the kind cluster
	$(PY) -m kindnode down $(KIND_ARGS)

kind-load:  ## load both images into the kind cluster's nodes (never pulled)
	"$$($(PY) -m kindnode kind $(KIND_ARGS))" load docker-image $(PEER_IMAGE) $(OPERATOR_IMAGE) --name $(KIND_CLUSTER)

deploy:  ## install Rebound on the current kubectl context (kind overlay)
	$(KUBECTL) apply -k manifests/overlays/kind
	$(KUBECTL) -n rebound-system rollout status deployment/rebound-operator --timeout=180s

undeploy:  ## remove Rebound (BallSessions first, so their children go with them)
	-$(KUBECTL) delete ballsessions --all -A --timeout=60s
	$(KUBECTL) delete -k manifests/overlays/kind --ignore-not-found

e2e:  ## kind cluster, images, deploy, e2e tests, teardown (KEEP=1 keeps the cluster)
	@$(MAKE) kind-up && $(MAKE) images kind-load && $(KIND_ENV) $(MAKE) deploy && \
	$(KIND_ENV) REBOUND_E2E=1 $(PY) -m pytest e2e -v --ignore=e2e/test_containers.py $(PYTEST_ARGS); \
	rc=$$?; if [ -z "$(KEEP)" ]; then $(MAKE) kind-down; fi; exit $$rc

# ---- local cluster: a real control plane built from source + a process node (README) -----
CLUSTER_BIN = $(shell $(PY) -c 'from localcluster.build import bin_dir; print(bin_dir())' 2>/dev/null)
CLUSTER_ENV = KUBECONFIG=$(CURDIR)/.cluster/kubeconfig PATH=$(CLUSTER_BIN):$$PATH

cluster-up:  ## build (first time ~7 min) + start a local control plane and process node, install Rebound (root)
	$(PY) -m localcluster up

cluster-down:  ## stop the local cluster: every process, network namespace and file
	$(PY) -m localcluster down

e2e-local:  ## the e2e suite against the local cluster (after make cluster-up)
	@test -f .cluster/kubeconfig || { echo "make e2e-local: no local cluster (run make cluster-up)" >&2; exit 1; }
	$(CLUSTER_ENV) REBOUND_E2E=local $(PY) -m pytest e2e -v --ignore=e2e/test_containers.py $(PYTEST_ARGS)
