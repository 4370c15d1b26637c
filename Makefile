# meshplane — every command a developer or CI needs. `make run` and `make test` set up on demand.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
OUR_CODE := serving adapters coordinator kubesim realkube meshplane_cli tests scripts
KUBE_BIN := $(TOOLS)/kube/bin
KUBE_SOURCES := tools/kube/go.mod tools/kube/go.sum $(wildcard tools/kube/cmd/*/main.go) scripts/build-kube.sh

.PHONY: setup run test lint proto proto-check breaking bench clean grpcurl kube kube-test

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

$(BUF): | $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund --no-package-lock @bufbuild/buf@$(BUF_VERSION)

$(TOOLS):
	mkdir -p $(TOOLS)
	printf '{"name":"meshplane-tools","private":true}\n' > $(TOOLS)/package.json

setup: $(VENV)/.installed $(BUF)

# The sandbox: kubesim + every adapter + the coordinator. With ../shared/fixtures beside the
# checkout it serves as the offline mirror (charts, sample apps, add-ons); otherwise upstream.
run: $(VENV)/.installed
	$(VENV)/bin/meshplane up $(if $(wildcard ../shared/fixtures/charts),--mirror ../shared/fixtures)

# Most tests wait on servers, so they run on 4 workers; the few that assert on rates or
# latencies (marker `timing`) then run alone, so other tests' load cannot skew them.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 4 -m "not timing and not realkube" tests --ignore=tests/bench
	$(PY) -m pytest -q -p no:xdist -m "timing and not realkube" tests --ignore=tests/bench
	bash scripts/kube-test.sh $(PY)

# The real Kubernetes control plane (docs/realkube.md): etcd, kube-apiserver, controller manager,
# scheduler, kwok and kubectl built from tools/kube (needs Go; rebuilt only when its sources
# change). `make kube-test` runs the `realkube` tests inside a loopback-only network namespace.
$(KUBE_BIN)/.built: $(KUBE_SOURCES)
	@mkdir -p $(TOOLS)/kube && rm -f $@
	set -o pipefail; bash scripts/build-kube.sh $(KUBE_BIN) 2>&1 | tee $(TOOLS)/kube/build.log
	touch $@

kube: $(KUBE_BIN)/.built

kube-test: $(VENV)/.installed
	bash scripts/kube-test.sh $(PY)

# The `realkube` benchmarks run in a loopback-only network namespace, like the realkube tests.
bench: $(VENV)/.installed
	$(PY) -m pytest -q -s tests/bench -p no:randomly --timeout=900 -m "not realkube"
	bash scripts/kube-test.sh $(PY) -s -p no:randomly --timeout=900 tests/bench

lint: setup proto-check
	$(VENV)/bin/ruff check $(OUR_CODE)
	$(VENV)/bin/ruff format --check $(OUR_CODE)
	$(PY) scripts/check_sizes.py $(OUR_CODE)
	$(VENV)/bin/mypy serving adapters coordinator kubesim realkube meshplane_cli
	$(VENV)/bin/lint-imports
	$(BUF) lint
	$(BUF) format --diff --exit-code

# Regenerate Python code, type stubs and gRPC stubs from protos/ into the `meshplane` package.
proto: $(VENV)/.installed
	bash scripts/gen-proto.sh .

# Generated code must match the protos: regenerate into a temp dir and compare.
proto-check: $(VENV)/.installed
	@tmp=$$(mktemp -d) && bash scripts/gen-proto.sh $$tmp && \
	  diff -r -x __pycache__ -x '__init__.py' -x 'py.typed' -x README.md $$tmp/meshplane meshplane && echo "generated code up to date"; \
	  rc=$$?; rm -rf $$tmp; exit $$rc

breaking: setup
	@if git rev-parse --verify -q main >/dev/null && git ls-tree -d main protos >/dev/null 2>&1 && [ -n "$$(git ls-tree main protos)" ]; then \
	  $(BUF) breaking protos --against '.git#branch=main,subdir=protos'; \
	else echo "breaking: no main branch with protos/ to compare against; skipped"; fi

# grpcurl, an independent gRPC client (tests/adapters/test_meshery_grpcurl.py drives the Meshery
# contract with it from our .proto file): built from its pinned Go module in tools/grpcurl with the
# Go module and build caches. The test skips, saying so, when this was not built.
GRPCURL := $(TOOLS)/bin/grpcurl

$(GRPCURL): tools/grpcurl/go.mod tools/grpcurl/go.sum
	mkdir -p $(TOOLS)/bin
	cd tools/grpcurl && version=$$(GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' github.com/fullstorydev/grpcurl) && \
	  GOFLAGS=-mod=readonly go build -trimpath -ldflags "-X main.version=$$version" \
	    -o $(abspath $(GRPCURL)) github.com/fullstorydev/grpcurl/cmd/grpcurl

grpcurl: $(GRPCURL)

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info
