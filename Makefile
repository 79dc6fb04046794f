# Hotline — two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test test-unit test-fast soak fuzz lint bench trace clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Start the all-in-one suite (in-memory bus; PostgreSQL from DATABASE_URL or a private server).
run: install
	$(BIN)/python -m hotline.suite

## Every test: unit, service, integration (real PostgreSQL and RabbitMQ) and end to end.
test: install
	$(BIN)/pytest -q -p no:cacheprovider

## Unit tests only: pure code, no server needed (the test servers' addresses point nowhere).
test-unit: install
	HOTLINE_TEST_PG=postgresql://postgres@127.0.0.1:9/postgres HOTLINE_TEST_AMQP=amqp://guest:guest@127.0.0.1:9 \
	  $(BIN)/pytest -q -p no:cacheprovider -m unit

## Unit and service tests only (no end-to-end replays).
test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider -m "not e2e"

## Failure-injection soak (R1): 5,000 calls while every service is SIGKILLed once, RabbitMQ
## restarted twice and PostgreSQL once; the servers' restarts on the e2e trace; router failover.
soak: install
	$(BIN)/pytest -q -p no:cacheprovider -m soak

## Schemathesis, long: FUZZ_EXAMPLES generated requests per operation of every service
## (make test runs the same with 2).
FUZZ_EXAMPLES ?= 1000
fuzz: install
	HOTLINE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py

lint: install
	$(BIN)/ruff check shared services hotline tools tests bench
	$(BIN)/mypy shared services hotline

## Benchmarks (numbers the issues ask for), written to BENCHMARKS.md.
bench: install
	$(BIN)/python -m bench.run_all

## Regenerate the bundled sample trace (seeded, deterministic).
trace: install
	$(BIN)/python tools/make_sample_trace.py --out traces/sample-busy-hour.jsonl

clean:
	rm -rf $(VENV) .hotline .pytest_cache .mypy_cache .ruff_cache
