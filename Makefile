# The two commands of README.md, and CI's checks.
#
#   make quickstart   run configs/quickstart.toml (embedded store, CPU)
#   make test         the whole test suite (what CI runs, plus fmt/clippy in .ci/run)
#
# Every target installs what it needs first (.ci/install-deps.sh: protoc,
# etcd-server, numpy), so both work on a fresh Debian machine.

CARGO ?= cargo

.PHONY: deps quickstart test lint chart-checks test-pytorch check-report bench-reference

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

# The checks that need PyTorch (torch from PyPI is several GB with its CUDA
# wheels, so it stays out of `make test`): mmdfn's weights load strictly
# into our own PyTorch MM-DFN and give the trial's log-probabilities; the
# PyTorch example (examples/pytorch-erc) sweeps as a training program, and
# trains with DDP under torchrun.
TORCH_VERSION ?= 2.5.1
TORCH_VENV ?= .venv-torch
test-pytorch: deps
	test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet 'torch==$(TORCH_VERSION)' 'numpy<3'
	$(CARGO) build --release --locked
	TORCH_PYTHON=$(TORCH_VENV)/bin/python bash tests/python/pytorch_checks.sh

# Training speed side by side with our own PyTorch references
# (benches/reference/): MM-DFN on one IEMOCAP-format file, FD-CMDIE on one
# MMSA-format file, threads pinned equal (THREADS=1), per-epoch times, peak
# memory and the ratio (BENCHMARKS.md).
bench-reference: deps
	test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet 'torch==$(TORCH_VERSION)' 'numpy<3'
	$(CARGO) build --release --locked
	TORCH_PYTHON=$(TORCH_VENV)/bin/python bash benches/reference/run.sh

# The report read by the programs that read it: the multi-dataset LaTeX
# table and the Statistics paragraph through pdflatex/bibtex (booktabs,
# natbib), the HTML report in headless Chromium (no console errors, every
# plot present, screenshots in docs/). Chromium and TeX Live are ~570 MB,
# so they stay out of `make test`.
check-report: deps
	@command -v chromium >/dev/null && command -v pdflatex >/dev/null && command -v pdfinfo >/dev/null || \
		$$( [ "$$(id -u)" -eq 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		chromium texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils
	$(CARGO) build --release --locked
	bash tests/report_checks.sh
