# herd's one test command is `make test` (the README names it, .ci/run calls it).
GO ?= go

.PHONY: test deps vet fuzz bench build lint chaos

build:
	$(GO) build -o bin/herd ./cmd/herd

deps:
	@scripts/deps.sh test

# Every test, with the race detector, plus gofmt, go vet and golangci-lint
# (lint), and a short run of each fuzz target over its corpus.
test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=10s

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

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/ipc/

# The benchmark suite: bench/run measures plain net/http against herd with
# 1, 2, N and 2N workers under wrk and herd loadtest and writes BENCHMARKS.md
# (flags: go run ./bench/run -h); then the Go micro-benchmarks of the hot
# paths, whose output is printed and appended to BENCHMARKS.md.
GOBENCH = $(GO) test -run '^$$' -bench . -benchtime 1s ./internal/ipc/ ./store/ ./app/ ./loadtest/
bench:
	@scripts/deps.sh bench
	$(GO) run ./bench/run -out BENCHMARKS.md
	@printf '\n## Go micro-benchmarks\n\n`%s`, run right after the table above:\n\n```text\n' "$(GOBENCH)" >> BENCHMARKS.md
	@echo "$(GOBENCH)"; rc=$$(mktemp); \
	{ $(GOBENCH) 2>&1; echo $$? > $$rc; } | tee -a BENCHMARKS.md; \
	printf '```\n' >> BENCHMARKS.md; s=$$(cat $$rc); rm -f $$rc; exit $$s

# Fault scenarios (kill storm, SIGSTOP primary, blocked worker socket,
# hostile control socket directory), bounded in time, on loopback, printing
# one table; RELIABILITY.md holds its latest output.
chaos:
	@scripts/chaos.sh
