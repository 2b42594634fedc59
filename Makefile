# The two commands of the README:
#   make run      set everything up, then execute the notebook end to end (default config); the executed copy and
#                 its pictures and checkpoints go to runs/ (ignored by git), so the checkout stays clean
#   make test     set everything up, then run every test (pytest for vae_utils, nbval for the notebook)
# For maintainers:
#   make refresh  re-execute the notebook in place and update the committed pictures and checkpoint
#   make benchmark  the speed comparison of the README
#   make benchmark-long  the long binarized recipe: 30 min of training, then the IWAE NLL with k=5000 (README)
# CPU-only machines: `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs the ~200 MB CPU build
# of torch instead of the default CUDA build (several GB); GPU users keep the default.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
NOTEBOOK    := notebooks/vae_fashion_mnist.ipynb
DATA_PKG    := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
TORCH_INDEX ?=
# headless runs: no progress bars (their widgets would only leave stale state), the epoch lines stay
EXECUTE     := --to notebook --execute --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.store_widget_state=False

.PHONY: run refresh test setup data benchmark benchmark-long

run: setup data
	TQDM_DISABLE=1 $(BIN)/jupyter nbconvert $(EXECUTE) --output-dir runs --output vae_fashion_mnist.ipynb $(NOTEBOOK)
	@echo "executed notebook: runs/vae_fashion_mnist.ipynb; pictures and checkpoints: runs/notebook/"

refresh: setup data
	VAE_OUT=$(CURDIR) TQDM_DISABLE=1 $(BIN)/jupyter nbconvert $(EXECUTE) --inplace $(NOTEBOOK)

test: setup data
	VAE_FAST=1 $(BIN)/python -m pytest --nbval --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

benchmark: setup data
	$(BIN)/python benchmarks/train_speed.py

benchmark-long: setup data
	$(BIN)/python benchmarks/long_binarized.py --out runs/long

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --index-url $(TORCH_INDEX) torch torchvision)
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
