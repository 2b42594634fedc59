# The two commands of the README:
#   make run    set everything up, then execute the notebook end to end (default config) in place
#   make test   set everything up, then run every test (pytest for vae_utils, nbval for the notebook)
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
NOTEBOOK := notebooks/vae_fashion_mnist.ipynb
DATA_PKG := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: run test setup data benchmark

run: setup data
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $(NOTEBOOK)

test: setup data
	VAE_FAST=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

benchmark: setup data
	$(BIN)/python benchmarks/train_speed.py

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

# Fashion-MNIST offline: Debian/Ubuntu ship the upstream IDX files as `dataset-fashion-mnist`.
# Elsewhere vae_utils falls back to torchvision's download (see README, "Data").
data:
	@if [ -f $(DATA_PKG) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	    || echo "note: could not install dataset-fashion-mnist; vae_utils will try torchvision's download"; \
	else echo "note: no apt-get; vae_utils will look in \$$VAE_DATA_DIR, then try torchvision's download"; fi
