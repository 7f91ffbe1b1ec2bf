# Two commands do everything on a fresh machine: `make demo` and `make test` (each runs `setup` first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Steadies the allocator's share of timing noise (see docs/performance.md).
export MALLOC_MMAP_THRESHOLD_ := 4294967296
export MALLOC_TRIM_THRESHOLD_ := 4294967296

.PHONY: setup test test-fast bench ablation demo track-demo deploy-accuracy gpu-check lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@# torch's CUDA build makes the .venv ~7 GB: say so before pip fails half-way with "No space left on device".
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free" -lt 8 ] && [ ! -f $(STAMP) ]; then echo "warning: $$free GB free here; the install needs about 8 GB (the .venv holds 7 GB)" >&2; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev,onnx,openvino,serve,timm,augment,tensorboard,video,track,mlflow]'
	touch $(STAMP)

# Two pytest workers on two cores, one intra-op thread each.
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow"

bench: setup
	$(PY) -m bench

# Augmentation ablation on ../shared/data (fruit, raccoon): 20 from-scratch runs of 600 updates, ~4-5 h on 2 cores with native bf16.
ablation: setup
	$(PY) -m bench.ablation --out runs/ablation

demo: setup
	$(PY) -m fcos demo --out runs/demo

# docs/tracking.md's figures: the synthetic shapes video tracked with the make demo model (trained first if missing).
track-demo: setup
	test -f runs/demo/best.pt || $(PY) -m fcos demo --out runs/demo
	$(PY) -m fcos data shapes-video --out data/shapes_video
	$(PY) -m fcos track --weights runs/demo/best.pt --source data/shapes_video --out runs/track-demo

# docs/deploy.md's accuracy table: every format x precision of the demo model (run `make demo` first).
deploy-accuracy: setup
	$(PY) -m fcos benchmark --weights runs/demo/best.pt --data data/shapes --out runs/benchmark --threads 2

# CUDA training, torchvision parity, fp16 AMP, NCCL DDP, ONNX Runtime CUDA: JSON lines and a verdict
# (exit 2 without CUDA; `$(PY) tools/gpu_check.py --device cpu` is a dry run of its logic).
gpu-check: setup
	$(PY) tools/gpu_check.py
	$(PY) -m bench.gpu_speed

lint: setup
	$(PY) -m ruff check src tests bench tools
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs .pytest_cache
