# herd's one test command is `make test` (the README names it, .ci/run calls it).
GO ?= go

.PHONY: test deps vet fuzz bench build lint node-deps

build:
	$(GO) build -o bin/herd ./cmd/herd

deps:
	@scripts/deps.sh test

# Every test, with the race detector, plus gofmt and go vet, and a short run
# of each fuzz target over its corpus.
test: deps vet node-deps
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=10s

# herd run's Node example needs express, from the committed lockfile.
node-deps:
	@test -d examples/node/node_modules/express || (cd examples/node && npm ci --no-audit --no-fund)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

lint: vet

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
	printf '```\n' >> BENCHMARKS.md; cat bench/node.md >> BENCHMARKS.md; s=$$(cat $$rc); rm -f $$rc; exit $$s
