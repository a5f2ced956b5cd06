# The two commands of README.md, and CI's checks.
#
#   make quickstart   run configs/quickstart.toml (embedded store, CPU)
#   make test         the whole test suite (what CI runs, plus fmt/clippy in .ci/run)
#
# Every target installs what it needs first (.ci/install-deps.sh: protoc,
# etcd-server, numpy), so both work on a fresh Debian machine.

CARGO ?= cargo

.PHONY: deps quickstart test lint chart-checks

deps:
	@bash .ci/install-deps.sh

quickstart: deps
	$(CARGO) run --release --locked -- run configs/quickstart.toml

test: deps
	$(CARGO) test --release --workspace --locked
	bash .ci/helm/check.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets --locked -- -D warnings

chart-checks:
	bash .ci/helm/check.sh
