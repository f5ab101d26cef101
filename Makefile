# `make demo` and `make test` do all set-up themselves on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdforge-installed
# torch is installed first, pinned, so that pip never pulls an unpinned multi-GB build.
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif
FASHION_DIR := /usr/share/datasets/fashion-mnist
# the real data beside the repository (CI's layout): the library itself looks in no such place
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export KDFORGE_DATA ?= $(SHARED_DATA)
endif

.PHONY: setup demo test data clean bench-extra

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH_PINS)
	$(BIN)/pip install -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package; installed when we are root, else skipped
# (the tests that need it say so).
data:
	@if [ ! -d $(FASHION_DIR) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	fi

demo: setup
	$(BIN)/kdforge demo

# the tests set one thread each, so they run side by side: one process per core, at most four
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

test: setup data
	$(BIN)/ruff check src bench tests
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# the optional `bench` extra: torchdistill for bench/vs_torchdistill.py, without its dependencies, so that
# the pinned torch and torchvision above are never replaced
bench-extra: setup
	$(BIN)/pip install --no-deps torchdistill==1.1.5

clean:
	rm -rf $(VENV) runs .pytest_cache
