# Workshop kit entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A venv is (re)installed when pyproject.toml changes; one stamp per set of extras.
LABS_STAMP := $(VENV)/.stamp-labs
DEV_STAMP := $(VENV)/.stamp-dev
INVENTORY ?= inventory/vagrant
# `make labs BUNDLE=DIR`: the labs' venv from the venue bundle's wheels only, no index asked.
PIP_FROM_BUNDLE = $(if $(BUNDLE),--no-index --find-links $(BUNDLE)/wheels)

.PHONY: help venv venv-dev doctor labs test lint docker tools images lab-image k8s-manifests bench bundle serve-bundle verify rehearse molecule vagrant-docker clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(LABS_STAMP): pyproject.toml
	@$(PYTHON) labctl/platforms.py  # an unsupported laptop or Python stops here, in one line
	@$(if $(BUNDLE),test -d $(BUNDLE)/wheels || { echo "make: $(BUNDLE)/wheels does not exist: BUNDLE=DIR names a folder that make bundle filled" >&2; exit 2; })
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_FROM_BUNDLE) --upgrade pip
	$(BIN)/pip install -q $(PIP_FROM_BUNDLE) -e '.[labs]'
	@touch $@

$(DEV_STAMP): pyproject.toml $(LABS_STAMP)
	$(BIN)/pip install -q -e '.[labs,k8s,dev]'
	@touch $@

venv: $(LABS_STAMP) ## virtualenv with labctl and TensorFlow

venv-dev: $(DEV_STAMP) ## virtualenv with everything the tests need

doctor: venv ## set up, then check this laptop for the workshop (labctl doctor)
	$(BIN)/labctl doctor

labs: venv ## set up, then run every local lab (01-07, 12, 13) with its check
	$(BIN)/labctl run all --check

docker: ## make sure a Docker daemon answers (installs and starts one on a bare CI host)
	tests/support/docker-up.sh

# After docker (order only): both may run apt-get, which takes one lock at a time.
tools: | docker ## host tools the tests drive (vagrant, debootstrap, busybox, chromium), installed when missing
	tests/support/ensure-tool.sh vagrant vagrant
	tests/support/ensure-tool.sh debootstrap debootstrap
	tests/support/ensure-tool.sh busybox busybox
	tests/support/ensure-tool.sh chromium chromium

images: docker tools ## build the local test images (no pulls: debootstrap + docker import)
	tests/support/build-images.sh

lab-image: docker ## the lab image for --target docker, FROM the pinned tensorflow/tensorflow
	labs/build-image.sh

k8s-manifests: venv-dev ## regenerate labs/*/k8s (kustomize dirs) from `labctl render`
	$(BIN)/python -m labctl.k8s.static

# The venv (pip) and the images (apt, debootstrap, docker build) are set up side by side.
test: ## set up, then run the whole test suite (Molecule and Vagrant side by side)
	$(MAKE) --no-print-directory -j2 venv-dev images
	tests/support/run-tests.sh $(BIN)/pytest

lint: venv-dev ## ruff, yamllint, ansible-lint
	$(BIN)/ruff check .
	$(BIN)/yamllint .
	$(BIN)/ansible-lint

bench: venv ## benchmark labs 04-07, forked and plain (wall, start-up, steps/s vs baseline, time to 0.95)
	$(BIN)/python -m labctl.bench

# Here BUNDLE names where the bundle goes: the venv comes from the index, not from it.
bundle: PIP_FROM_BUNDLE =
bundle: venv-dev ## on a connected machine: fetch the venue bundle into BUNDLE (default .labctl/bundle), with manifest.json
	$(BIN)/python -m labctl.bundle fetch --out $(or $(BUNDLE),.labctl/bundle)

# At the venue: the bundle's files (kit_mirror_url) and images (a registry mirror) to the nodes.
serve-bundle: venv ## serve the venue bundle BUNDLE (default .labctl/bundle) on BIND (default 127.0.0.1), port 8000
	$(BIN)/python -m labctl.bundle serve $(or $(BUNDLE),.labctl/bundle) --bind $(or $(BIND),127.0.0.1)

verify: venv-dev ## run the testinfra suite against a cluster (INVENTORY=..., STAGES=a,b to limit)
	$(if $(filter environment%,$(origin STAGES)),$(error STAGES is set in the environment, which would narrow a full verify silently: unset it, or pass it on the command line (make verify STAGES=...)))
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest tests/infra --ansible-inventory=$(INVENTORY) \
	  --connection=ansible --sudo $(if $(STAGES),--stages $(STAGES))

rehearse: venv-dev ## boot the cluster, make verify, run the cluster labs, write a go/no-go table (KEEP=1, DISRUPTIVE=1)
	$(BIN)/python -m labctl.rehearse $(if $(KEEP),--keep) $(if $(DISRUPTIVE),--disruptive)

vagrant-docker: venv-dev images ## the Vagrantfile on docker (1+2, 3+1): offline stages, idempotence, verify, destroy
	$(BIN)/pytest tests/vagrant

molecule: venv-dev images ## run every Molecule scenario (SCENARIO=name for one)
	$(BIN)/pytest tests/molecule $(if $(SCENARIO),-k $(SCENARIO))

clean: ## remove lab runs and caches (keeps the venv)
	rm -rf .labctl .pytest_cache .ruff_cache
