# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv when needed and install everything into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo_output
# Torch from the wheels this project is tested with (CPU runs fine; CUDA is used when present).
TORCH  := torch==2.14.1 torchvision==0.29.1
XVFB   := $(shell command -v xvfb-run >/dev/null 2>&1 && echo "xvfb-run -a -s '-screen 0 1280x1024x24'")

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[napari,dev]"
	@# A .venv made before the move to PyQt6 still has PyQt5, which qtpy would pick first.
	@$(BIN)/python -m pip uninstall --quiet --yes PyQt5 PyQt5-Qt5 PyQt5-sip 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/microfossil sample $(DEMO) --seed 7 --overwrite
	$(BIN)/microfossil segment $(DEMO)/scan.tif -o $(DEMO)/labels.tif --confidence $(DEMO)/confidence.tif --overwrite
	$(BIN)/microfossil fossils $(DEMO)/labels.tif --image $(DEMO)/scan.tif -o $(DEMO)/fossils --crops --overwrite
	$(BIN)/python scripts/score.py $(DEMO)/labels.tif $(DEMO)/truth.tif --instances $(DEMO)/fossils/instances.tif $(DEMO)/truth_instances.tif
	@echo
	@echo "Demo outputs are in $(CURDIR)/$(DEMO):"
	@echo "  scan.tif, truth.tif        the synthetic sample scan and its ground truth"
	@echo "  labels.tif, confidence.tif the segmentation and the per-voxel confidence (%)"
	@echo "  fossils/                   fossils.csv, instances.tif, meshes/*.stl, crops/*.tif"
	@echo "Open them in napari:  $(BIN)/napari $(DEMO)/scan.tif $(DEMO)/labels.tif"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

test: lint
ifeq ($(XVFB),)
	@echo "xvfb-run not found: the GUI tests need a display and will be skipped (apt-get install xvfb to run them)"
endif
	$(XVFB) $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
