# herd's one test command is `make test` (the README names it, .ci/run calls it).
GO ?= go

.PHONY: test deps vet fuzz bench build lint chaos image node-deps

build:
	$(GO) build -o bin/herd ./cmd/herd

deps:
	@scripts/deps.sh test

# Every test, with the race detector, plus gofmt, go vet and golangci-lint
# (lint), and a short run of every fuzz target (FUZZTIME each: about 12
# targets × 5s, under two minutes with the builds).
test: deps lint node-deps
	$(GO) test -race -count=1 -timeout 20m ./...
	cd deploy/kubernetes && $(GO) test -count=1 ./...
	$(MAKE) fuzz FUZZTIME=5s

# herd run's Node example needs express, from the committed lockfile.
node-deps:
	@test -d examples/node/node_modules/express || (cd examples/node && npm ci --no-audit --no-fund)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

# gofmt and go vet (vet), then golangci-lint with the linters listed in
# .golangci.yml, installed at a pinned version into bin/tools/ when missing.
GOLANGCI_LINT = bin/tools/golangci-lint
lint: vet
	@GO=$(GO) scripts/deps.sh lint
	$(GOLANGCI_LINT) run ./...

# Every fuzz target of every package, FUZZTIME each: go test fuzzes one
# target per run, so the targets are listed (go test -list) and run in turn.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The benchmark suite: bench/run measures plain net/http against herd with
# 1, 2, N and 2N workers under wrk and herd loadtest and writes BENCHMARKS.md
# (flags: go run ./bench/run -h); then the Go micro-benchmarks of the hot
# paths, whose output is printed and appended to BENCHMARKS.md.
GOBENCH = $(GO) test -run '^$$' -bench . -benchtime 1s ./internal/ipc/ ./store/ ./app/ ./loadtest/ ./cluster/
bench:
	@scripts/deps.sh bench
	$(GO) run ./bench/run -out BENCHMARKS.md
	@printf '\n## Go micro-benchmarks\n\n`%s`, run right after the table above:\n\n```text\n' "$(GOBENCH)" >> BENCHMARKS.md
	@echo "$(GOBENCH)"; rc=$$(mktemp); \
	{ $(GOBENCH) 2>&1; echo $$? > $$rc; } | tee -a BENCHMARKS.md; \
	printf '```\n' >> BENCHMARKS.md; cat bench/node.md >> BENCHMARKS.md; s=$$(cat $$rc); rm -f $$rc; exit $$s

# Fault scenarios (kill storm, SIGSTOP primary, blocked worker socket,
# hostile control socket directory), bounded in time, on loopback, printing
# one table; RELIABILITY.md holds its latest output.
chaos:
	@scripts/chaos.sh

# The container image: a static binary in FROM scratch (deploy/Dockerfile),
# built without pulling anything. IMAGE names it.
IMAGE ?= herd:latest
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/herd-static ./cmd/herd
	docker build -f deploy/Dockerfile -t $(IMAGE) .
