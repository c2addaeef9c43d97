# herd's one test command is `make test` (the README names it, .ci/run calls it).
GO ?= go

.PHONY: test deps vet fuzz bench build lint

build:
	$(GO) build -o bin/herd ./cmd/herd

deps:
	@scripts/deps.sh test

# Every test, with the race detector, plus gofmt and go vet, and a short run
# of every fuzz target (FUZZTIME each: about 11 targets × 5s, under two
# minutes with the builds).
test: deps vet
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=5s

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...

lint: vet

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
GOBENCH = $(GO) test -run '^$$' -bench . -benchtime 1s ./internal/ipc/ ./store/ ./app/ ./loadtest/
bench:
	@scripts/deps.sh bench
	$(GO) run ./bench/run -out BENCHMARKS.md
	@printf '\n## Go micro-benchmarks\n\n`%s`, run right after the table above:\n\n```text\n' "$(GOBENCH)" >> BENCHMARKS.md
	@echo "$(GOBENCH)"; rc=$$(mktemp); \
	{ $(GOBENCH) 2>&1; echo $$? > $$rc; } | tee -a BENCHMARKS.md; \
	printf '```\n' >> BENCHMARKS.md; s=$$(cat $$rc); rm -f $$rc; exit $$s
