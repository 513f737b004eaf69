# offline-access: the two commands are `make dev` and `make test`. Everything they need
# is installed by the project itself into .venv (pinned in infra/local/requirements.txt).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
STAMP := $(VENV)/.installed
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0

.PHONY: help dev dev-check job test ci lint lint-infra build deploy secret smoke venv bench fuzz fuzz-check clean-local

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): infra/local/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements.txt
	touch $(STAMP)

CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): infra/local/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

venv: $(STAMP) ## Install the pinned local tools (moto, cargo-lambda, SAM CLI, cfn-lint) into .venv

build: $(STAMP) ## Build the five functions for Lambda: release, arm64, with cargo-lambda
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 \
	  --bin auth-code --bin refresher --bin access-token --bin events --bin parked-sign-in

STACK ?= offline-access

deploy: $(STAMP) ## sam build + sam deploy (guided the first time; see infra/samconfig.example.toml)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build --beta-features
	if [ -f samconfig.toml ]; then $(VENV)/bin/sam deploy; else $(VENV)/bin/sam deploy --guided --capabilities CAPABILITY_IAM; fi

secret: $(STAMP) ## Store Google's client secret JSON: make secret FILE=client_secret_....json [STACK=...]
	$(VENV)/bin/python infra/deploy/put-secret "$(FILE)" "$(STACK)"

smoke: $(STAMP) ## Smoke-test the deployed stack from its outputs [STACK=...] [SMOKE_CODE=a real code]
	$(VENV)/bin/python infra/deploy/smoke --stack "$(STACK)"

dev: $(STAMP) ## Run locally: moto, the Google emulator, every function behind cargo lambda's Lambda APIs
	infra/local/dev

dev-check: $(STAMP) ## Start make dev, paste its printed example, run make job, Ctrl-C: as a newcomer would
	infra/local/check-dev

job: $(STAMP) ## With make dev running: run one offline-job cycle (the committed EventBridge event, timed now)
	@mkdir -p .local
	@$(PYTHON) -c 'import datetime, json; e = json.load(open("tests/events/eventbridge-scheduled.json")); \
	  e["time"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"); \
	  json.dump(e, open(".local/scheduled-event.json", "w"))'
	$(VENV)/bin/cargo-lambda lambda invoke --invoke-address 127.0.0.1 --invoke-port $${LAMBDA_PORT:-9000} \
	  refresher --data-file .local/scheduled-event.json --output-format json | $(PYTHON) -m json.tool

test: $(STAMP) ## Run every test against moto and the Google emulator
	cargo build --workspace --bins
	mkdir -p .local
	infra/local/with-moto cargo test --workspace 2>&1 | tee .local/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' .local/test.log

lint: ## rustfmt and clippy, warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

lint-infra: $(STAMP) $(CHECKOV_STAMP) ## Check template.yaml: sam validate --lint, cfn-lint, checkov
	$(VENV)/bin/sam validate --lint --template template.yaml
	$(VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation --file template.yaml

ci: lint lint-infra fuzz-check dev-check test ## What CI runs (dev-check before test: on a fresh clone it is the first build)

bench: $(STAMP) ## Sign-in, offline-job, access-token, RISC and quota benchmarks (release build) against the local stack
	cargo build --release --workspace --bins
	FUNCTION_PROFILE=release infra/local/with-moto cargo bench --bench sign_in --bench refresh --bench access_token --bench risc --bench quota

CARGO_FUZZ := .local/cargo/bin/cargo-fuzz
FUZZ_TARGETS ?= parse_request access_token_request set_claims stream_image token_answer client_secret
FUZZ_SECS ?= 60
FUZZ_RUNS ?= 10000000

$(CARGO_FUZZ):
	cargo install cargo-fuzz --version 0.13.1 --locked --root .local/cargo

fuzz: $(CARGO_FUZZ) ## Fuzz each outside-input parser for FUZZ_SECS or FUZZ_RUNS, whichever ends first (FUZZ_TARGETS picks; see README)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t && \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 PATH="$(CURDIR)/.local/cargo/bin:$$PATH" cargo fuzz run $$t corpus/$$t seeds/$$t -- \
	    -dict=dicts/$$t.dict -max_total_time=$(FUZZ_SECS) -runs=$(FUZZ_RUNS) -print_final_stats=1) || exit 1; \
	done

fuzz-check: ## Type-check the fuzz targets (their own workspace), on the root Cargo.lock's versions
	cp Cargo.lock fuzz/Cargo.lock
	CARGO_TARGET_DIR=$(CURDIR)/target cargo check --manifest-path fuzz/Cargo.toml --bins

clean-local: ## Remove the local stack's state and logs
	rm -rf .local
