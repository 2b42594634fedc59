# The two commands of the README:
#   make run      set everything up, then execute the main notebook (the vanilla VAE) end to end, a line per cell
#                 in the terminal; the executed copy and its pictures and checkpoints go to runs/ (ignored by git)
#                 make run NOTEBOOK=notebooks/vqvae.ipynb runs the VQ-VAE notebook the same way
#   make test     set everything up, then run every test (pytest for vae_utils, nbval for the notebooks)
# For maintainers:
#   make refresh  re-execute every notebook in place (torch's threads pinned) and update the committed pictures and
#                 checkpoints
#   make benchmark  the speed comparison of docs/speed.md, then the step layer by layer (benchmarks/step_profile.py)
#   make benchmark-long  the long binarized recipe: 30 min of training, then the IWAE NLL with k=5000
#   make benchmark-disentanglement  VAE, beta-VAE, beta-TCVAE, FactorVAE, DIP-VAE on dSprites: six metrics (docs/family.md)
#   make benchmark-reproduce  the papers' MLP setting: VAE, VampPrior, IAF, NLL with k=5000 (docs/family.md)
#   make benchmark-hierarchical  the hierarchical VAE: beside the default VAE, then the dense ladder binarized, k=5000
#                                (docs/hierarchical.md)
#   make benchmark-gpu  everything a short GPU loan should measure, in one command (benchmarks/gpu_check.py)
# Set-up picks PyTorch's CPU wheels (about 200 MB) on Linux machines without an NVIDIA driver when their index
# answers, PyPI's default CUDA build (several GB) otherwise (.ci/torch_index.py); `make setup GPU=1` forces the
# default, TORCH_INDEX=URL names an index.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
NOTEBOOK    ?= notebooks/vae_fashion_mnist.ipynb
NOTEBOOKS   := notebooks/vae_fashion_mnist.ipynb notebooks/vqvae.ipynb notebooks/vae_family.ipynb
DATA_PKG    := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
TORCH_INDEX ?=
GPU         ?=
# headless runs (notebooks/execute.py): no progress bars (their widgets would only leave stale state), the epoch
# lines stay, and one line per executed cell goes to the terminal

.PHONY: run refresh test setup data benchmark benchmark-long benchmark-disentanglement benchmark-reproduce \
	benchmark-hierarchical benchmark-gpu

run: setup data
	TQDM_DISABLE=1 $(BIN)/python notebooks/execute.py $(NOTEBOOK) --out runs/$(notdir $(NOTEBOOK))
	@echo "pictures, checkpoints and the TensorBoard log: runs/notebook/ (the checkout is left as it was)"
	@echo "next: $(BIN)/jupyter lab runs/$(notdir $(NOTEBOOK))   # the executed notebook (or: source $(VENV)/bin/activate)"
	@echo "      $(BIN)/python -m vae_utils sample runs/notebook/saved_models/fashion-mnist-run/best.pt --out samples.png"
	@echo "      $(BIN)/tensorboard --logdir runs"

# refresh pins torch's thread count (to torch's own default, unless OMP_NUM_THREADS is set): the committed outputs are
# compared to the last digit, and unpinned, training follows the machine's load (vae_utils/threads.py), so that any
# command run beside it would change them
refresh: setup data
	threads=$${OMP_NUM_THREADS:-$$($(BIN)/python -c "import torch; print(torch.get_num_threads())")}; \
	for nb in $(NOTEBOOKS); do OMP_NUM_THREADS=$$threads VAE_OUT=$(CURDIR) TQDM_DISABLE=1 \
	  $(BIN)/python notebooks/execute.py $$nb --inplace || exit 1; done

test: setup data
	VAE_FAST=1 $(BIN)/python -m pytest --nbval --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

benchmark: setup data
	$(BIN)/python benchmarks/train_speed.py --json benchmarks/results/train_speed.json --plot generated_images/anytime_speed.png
	$(BIN)/python benchmarks/step_profile.py

benchmark-long: setup data
	$(BIN)/python benchmarks/long_binarized.py --out runs/long

benchmark-disentanglement: setup
	$(BIN)/python benchmarks/disentanglement.py --train-images 150000 --epochs 2 --seeds 5 \
	  --json benchmarks/results/disentanglement.json

benchmark-reproduce: setup data
	$(BIN)/python benchmarks/reproduce.py --families vae vamp iaf --seeds 3 --out runs/reproduce --json benchmarks/results/reproduce.json

benchmark-hierarchical: setup data
	$(BIN)/python benchmarks/hierarchical.py default
	$(BIN)/python benchmarks/hierarchical.py binarized --recipe ladder-binarized --out runs/ladder-binarized --seeds 3 \
	  --json benchmarks/results/ladder-binarized.json

benchmark-gpu: setup data
	$(BIN)/python benchmarks/gpu_check.py

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@index="$(TORCH_INDEX)"; [ -n "$$index" ] || index=$$(GPU="$(GPU)" $(PYTHON) .ci/torch_index.py); \
	if [ -n "$$index" ]; then echo "installing torch from $$index"; \
	  $(BIN)/python -m pip install --index-url "$$index" torch torchvision; fi
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	@GPU="$(GPU)" $(PYTHON) .ci/torch_index.py --report $(VENV)
	touch $@

# Fashion-MNIST offline: Debian/Ubuntu ship the upstream IDX files as `dataset-fashion-mnist`.
# Elsewhere vae_utils falls back to torchvision's download (see docs/data.md).
data:
	@if [ -f $(DATA_PKG) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	    || echo "note: could not install dataset-fashion-mnist; vae_utils will try torchvision's download"; \
	else echo "note: no apt-get; vae_utils will look in \$$VAE_DATA_DIR, then try torchvision's download"; fi
