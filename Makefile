# Two entry points (README): `make run` sets up and runs the main job, `make test` sets up and
# runs the whole test suite. Both create or update .venv; a stamp file makes the set-up a no-op
# when pyproject.toml and constraints.txt have not changed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deploykit-installed

.PHONY: setup run test lint bench protos clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

# Main job: the pipeline with its default configuration (deploykit/pipeline/default.yaml): train
# the MLP twins, export and validate every format, serve them, check serving parity, compare the
# deploy paths under load; the report goes to reports/RUN/report.html (the path is printed).
run: setup
	$(BIN)/deploykit doctor
	$(BIN)/deploykit pipeline run

test: setup
	$(BIN)/python -m pytest

# Regenerate deploykit/protocol/protos/*_pb2.py (committed, so installs need no grpcio-tools).
protos: setup
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. deploykit/protocol/protos/*.proto

bench: setup
	$(BIN)/python benchmarks/export_zoo.py
	$(BIN)/python benchmarks/serve_startup.py

lint: setup
	$(BIN)/ruff check deploykit tests

clean:
	rm -rf $(VENV) runs reports .pytest_cache
	find models -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
