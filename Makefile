# Two entry points (README): `make run` sets up and runs the main job, `make test` sets up and
# runs the whole test suite. Both create or update .venv; a stamp file makes the set-up a no-op
# when pyproject.toml and constraints.txt have not changed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deploykit-installed

.PHONY: setup run test test-lean lint bench protos clean native

# Set-up also builds the optional native gRPC data plane when the toolchain is there (or can be
# installed: Debian's gRPC C++ packages); otherwise it says so and the Python data plane serves.
NATIVE_SOURCES := $(wildcard deploykit/native/src/*) deploykit/native/CMakeLists.txt $(wildcard deploykit/protocol/protos/*.proto)
NATIVE_STAMP   := deploykit/native/build/.deploykit-native

setup: $(STAMP) $(NATIVE_STAMP)

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	scripts/build-native.sh $(BIN)/python --optional
	@mkdir -p $(dir $@) && touch $@

# The native data plane, required (fails when the toolchain is missing).
native: $(STAMP)
	scripts/build-native.sh $(BIN)/python

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
	$(MAKE) test-lean

# The lean install (deploykit[serve,loadtest], no TensorFlow/PyTorch) in its own .venv-lean: the
# ONNX serving, client and load-test tests marked `lean`.
test-lean:
	PYTHON=$(PYTHON) scripts/test-lean.sh

# Regenerate deploykit/protocol/protos/*_pb2.py (committed, so installs need no grpcio-tools).
protos: setup
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. deploykit/protocol/protos/*.proto

# deploykit bench: the ONNX zoo (trained and exported once into models/), then the data planes against
# the transport floors; writes BENCHMARKS.md and BENCHMARKS.json. benchmarks/*.py: older benchmarks.
bench: setup
	@for m in mlp cnn transformer; do test -d models/$$m-torch-onnx || { \
	  $(BIN)/deploykit train --model $$m --framework torch --epochs 3 --out runs/$$m && \
	  $(BIN)/deploykit export runs/$$m --repo models --format onnx; } || exit 1; done
	$(BIN)/deploykit bench --repo models --out BENCHMARKS.md --notes benchmarks/bench-notes.md

lint: setup
	$(BIN)/ruff check deploykit tests

clean:
	rm -rf $(VENV) .venv-lean runs reports .pytest_cache deploykit/native/build deploykit/native/_dataplane*.so
	find models -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
