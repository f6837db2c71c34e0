# kinlog — the two commands: `make demo` runs the pipeline on the local stack,
# `make test` runs every test (unit and integration) on it.
GO          ?= go
STACK       := infra/local/stack
WITH_STACK  := infra/local/with-stack
TEST_FLAGS  ?= -race -count=1 -timeout 20m
BENCH_FLAGS ?= -run=^$$ -bench=. -benchmem -count=1 -timeout 20m
PKGS        ?= ./...

.PHONY: test demo bench bench-go bench-producer bench-consumer bench-query bench-worker bench-leases bench-agent lint lambda stack-up stack-down stack-status tidy-check

## test: start the local stack if it is not up, vet, run all tests with -race, stop what it
## started. Prints go test's package lines, failing tests' output, and the count of tests.
test:
	$(GO) build -o bin/testreport ./internal/testreport
	$(WITH_STACK) bash -o pipefail -c '$(GO) vet $(PKGS) && $(GO) test -json $(TEST_FLAGS) $(PKGS) | bin/testreport'

## demo: bring the local stack up (left running) and run the pipeline on it
demo: stack-up
	eval "$$($(STACK) env)" && $(GO) run ./cmd/kinlog demo
	@echo "The local stack is still up: 'make stack-down' stops it."

## bench: run the benchmarks against the local stack, then the programs that print kinlog's
## figures next to its peers': producer vs a8m/kinesis-producer, consumer drain vs
## vmware-go-kcl-v2, query vs DuckDB, the whole worker (stream to S3), the lease-table
## simulation, and the agent's bench (lines/s, CPU per line and memory from one file and
## from 1,000 files). The peers are built from their own modules, outside kinlog's go.mod.
bench: bench-go bench-producer bench-consumer bench-query bench-worker bench-leases bench-agent

bench-go:
	$(WITH_STACK) sh -c '$(GO) test $(BENCH_FLAGS) $(PKGS)'

## bench-producer: 1M lines to a 4-shard stream, kinlog and a8m alternating, 3 runs each
bench-producer:
	cd producer/internal/peer/a8m && $(GO) build -o $(CURDIR)/bin/a8m-bench .
	$(GO) build -o bin/kinlog-producer-bench ./producer/internal/bench
	$(WITH_STACK) sh -c 'for i in 1 2 3; do \
	  bin/kinlog-producer-bench -n 1000000 -shards 4 -verify=false | grep -E "records/s|process CPU"; \
	  bin/a8m-bench -n 1000000 -shards 4 -verify=false | grep -E "records/s|process CPU"; done'

## bench-consumer: drain 500k records of 4 and of 16 shards, kinlog and vmware-go-kcl-v2
## alternating (drain time, CPU per record, peak RSS)
bench-consumer:
	cd consumer/internal/peer/vmware && $(GO) build -o $(CURDIR)/bin/vmware-drain .
	$(GO) build -o bin/kinlog-drain ./consumer/internal/bench
	$(WITH_STACK) sh -c 'for shards in 4 16; do \
	  s=$$(bin/kinlog-drain -fill 500000 -shards $$shards) || exit 1; \
	  for i in 1 2 3; do bin/kinlog-drain -stream $$s -records 500000 || exit 1; \
	    bin/vmware-drain -stream $$s -records 500000 -table $$s-vmware-$$i || exit 1; done; \
	  bin/vmware-drain -stream $$s -table $$s-vmware-3 -delete >/dev/null 2>&1; done'

## bench-query: kinlog vs DuckDB counts over 1M rows of Parquet (the answers must agree),
## and parallel archive scans on MinIO (NDJSON gzip/zstd, Parquet zstd); medians of 5
bench-query:
	$(WITH_STACK) sh -c '$(GO) test -run=^$$ -bench="BenchmarkCountVsDuckDB|BenchmarkCountParquet" -benchmem -count=5 -benchtime=5x ./query/ && $(GO) test -run=^$$ -bench=BenchmarkIntegrationScan -count=5 -benchtime=3x ./query/'

## bench-worker: the whole worker, 500k records from a 4-shard stream to MinIO, NDJSON gzip
## and Parquet zstd: records per second per core of CPU
bench-worker:
	$(GO) build -o bin/workerbench ./sinks/s3/internal/workerbench
	$(WITH_STACK) sh -c 's=$$(bin/workerbench -fill 500000 -shards 4) || exit 1; \
	  for e in ndjson parquet; do bin/workerbench -stream $$s -records 500000 -encoding $$e || exit 1; done'

## bench-leases: the lease-table simulation (virtual time) of 1,000 shards with 10 and 100
## workers, scanning and with leader assignment (10,000 shards: KINLOG_LEASESIM_ONLY=...,
## minutes of CPU each), and the dynalite run of both with 1,000 shards
bench-leases:
	KINLOG_LEASESIM=1 KINLOG_LEASESIM_ONLY=1000x10,1000x100,1000x10/leader,1000x100/leader $(GO) test -count=1 -timeout 60m -run TestLeaseSimFleet -v ./consumer/ | grep -v level=
	$(WITH_STACK) sh -c '$(GO) test -count=1 -timeout 30m -run=^$$ -bench=BenchmarkIntegrationLeaseTableCost -v ./consumer/ | grep -v level='

bench-agent:
	$(WITH_STACK) sh -c '$(GO) run ./producer/internal/bench -n 100000 -shards 4 && $(GO) run ./agent/internal/bench -n 300000 -files 1 && $(GO) run ./agent/internal/bench -n 100000 -files 1000'

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
