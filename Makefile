# kinlog — the two commands: `make demo` runs the pipeline on the local stack,
# `make test` runs every test (unit and integration) on it.
GO          ?= go
STACK       := infra/local/stack
WITH_STACK  := infra/local/with-stack
TEST_FLAGS  ?= -race -count=1 -timeout 20m
BENCH_FLAGS ?= -run=^$$ -bench=. -benchmem -count=1 -timeout 20m
PKGS        ?= ./...

.PHONY: test demo bench lint lambda stack-up stack-down stack-status tidy-check

## test: start the local stack if it is not up, vet, run all tests with -race, stop what it
## started. Prints go test's package lines, failing tests' output, and the count of tests.
test:
	$(GO) build -o bin/testreport ./internal/testreport
	$(WITH_STACK) bash -o pipefail -c '$(GO) vet $(PKGS) && $(GO) test -json $(TEST_FLAGS) $(PKGS) | bin/testreport'

## demo: bring the local stack up (left running) and run the pipeline on it
demo: stack-up
	eval "$$($(STACK) env)" && $(GO) run ./cmd/kinlog demo
	@echo "The local stack is still up: 'make stack-down' stops it."

## bench: run the benchmarks against the local stack, then the producer's end-to-end bench
## (100k log lines to a 4-shard stream: records/s, Kinesis records, CPU per record) and the
## agent's (lines/s, CPU per line and memory from one file and from 1,000 files)
bench:
	$(WITH_STACK) sh -c '$(GO) test $(BENCH_FLAGS) $(PKGS) && $(GO) run ./producer/internal/bench -n 100000 -shards 4 && $(GO) run ./agent/internal/bench -n 300000 -files 1 && $(GO) run ./agent/internal/bench -n 100000 -files 1000'

## lint: formatting, vet, and a tidy go.mod
lint: tidy-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## lambda: build the Lambda function of serverless mode (cmd/kinlog-lambda, runtime
## provided.al2023) for each of LAMBDA_ARCHS: dist/lambda/<arch>/bootstrap, zipped as
## dist/kinlog-lambda-<arch>.zip (infra/terraform: lambda_zip; arm64 is lambda_architecture
## arm64, amd64 is x86_64). The bootstrap gets a fixed time stamp so that the same build makes
## the same zip, and terraform does not redeploy an unchanged function. Zips with zip, or
## with python3's zipfile where zip is not installed.
LAMBDA_ARCHS ?= arm64 amd64
LAMBDA_PKG   ?= ./cmd/kinlog-lambda
ZIP          ?= zip

lambda: $(foreach a,$(LAMBDA_ARCHS),dist/kinlog-lambda-$(a).zip)

dist/kinlog-lambda-%.zip: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o dist/lambda/$*/bootstrap $(LAMBDA_PKG)
	TZ=UTC touch -t 198001010000 dist/lambda/$*/bootstrap
	rm -f $@
	cd dist/lambda/$* && if command -v $(ZIP) >/dev/null 2>&1; then TZ=UTC $(ZIP) -q -X ../../kinlog-lambda-$*.zip bootstrap; \
		else TZ=UTC python3 -m zipfile -c ../../kinlog-lambda-$*.zip bootstrap; fi
	@echo "$@: $$(du -h $@ | cut -f1)"

.PHONY: FORCE
FORCE:

tidy-check:
	@$(GO) mod tidy -diff || (echo "go mod tidy would change go.mod/go.sum (diff above)"; exit 1)

stack-up:
	$(STACK) up
stack-down:
	$(STACK) down
stack-status:
	$(STACK) status
