# One file of commands for people and CI. Every target creates/refreshes .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000
DATA   ?= data
SHARED ?= ../shared/data

.PHONY: install serve serve-staged serve-ray test lint format protos data train train-staged train-imdb evaluate bench-serve bench-peers bench-engines bench-protocols bench-ray bench-connection-guard reliability reliability-soak report experiments clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make serve: serve the embedded default models from checkpoints/ on port 8000
serve: $(STAMP)
	DYNALAY_PORT=$(PORT) $(PY) -m service

## make serve-staged: serve the staged CIFAR-10 network (models/cifar10-staged), whose agent loops
serve-staged: $(STAMP)
	DYNALAY_PORT=$(PORT) DYNALAY_MODEL_DIR=models $(PY) -m service

## make serve-ray: the same service as Ray Serve replicas on a local loopback Ray cluster (port 8000,
## metrics of every replica on 127.0.0.1:8080/metrics); SIGTERM or Ctrl-C stops it all
serve-ray: $(STAMP)
	DYNALAY_PORT=$(PORT) $(PY) -m service.ray

## make test: lint, then the whole test suite on CPU, model/'s docstring examples included
## (pyproject testpaths + --doctest-modules; what .ci/run calls)
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## make protos: recompile the gRPC protocol's descriptor (service/oip/protocol/inference.binpb)
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -I service/oip/protocol \
		--descriptor_set_out=service/oip/protocol/inference.binpb service/oip/protocol/inference.proto

## make data: CIFAR-10/100, IMDB, WikiText-2 in their official layouts under $(DATA)/ (from $(SHARED) when present)
data: $(STAMP)
	test -d $(DATA)/cifar-10-batches-bin || $(PY) $(SHARED)/cifar10/export.py $(DATA)
	test -d $(DATA)/cifar-100-binary || \
		$(PY) scripts/export_cifar100.py $(SHARED)/cifar100/cifar100-carry.npz $(DATA)
	test -d $(DATA)/aclImdb || $(PY) $(SHARED)/imdb/export.py $(DATA)
	test -d $(DATA)/wikitext-2 || (mkdir -p $(DATA)/wikitext-2 && for s in train valid test; do \
		gunzip -c $(SHARED)/wikitext2/wiki.$$s.tokens.gz > $(DATA)/wikitext-2/wiki.$$s.tokens; done)

## make train: retrain the embedded CIFAR-10 default on CPU, three fits (~99 min on 2 cores)
train: $(STAMP)
	$(PY) -m training fit --preset fast-deep --dataset cifar10 --data-dir $(DATA) \
		--out runs/cifar10-base/ckpt --run-dir runs/cifar10-base/run --name cifar10-base
	$(PY) -m training fit --preset fast-deep-loops --dataset cifar10 --data-dir $(DATA) \
		--init-from runs/cifar10-base/ckpt --out runs/cifar10-loops/ckpt \
		--run-dir runs/cifar10-loops/run --name cifar10-loops
	$(PY) -m training fit --preset fast-deep-tta-agent --dataset cifar10 --data-dir $(DATA) \
		--init-from runs/cifar10-loops/ckpt --name cifar10 --version 0.5.1 --out checkpoints/cifar10 \
		--run-dir runs/cifar10-agent/run
	$(PY) scripts/calibration_set.py checkpoints/cifar10 --data-dir $(DATA)

## make train-staged: the staged CIFAR-10 network whose loops carry the depth, two fits on CPU
## (~98 min on 2 cores)
## (anytime fit 1 on 45,000 images, 5,000 held out for every choice; then the agent, in MACs)
train-staged: $(STAMP)
	$(PY) -m training fit --preset staged --dataset cifar10 --data-dir $(DATA) \
		--out runs/staged/base --run-dir runs/staged/base-run --name cifar10-staged
	$(PY) -m training fit --preset staged-agent --dataset cifar10 --data-dir $(DATA) \
		--init-from runs/staged/base --name cifar10-staged --version 0.2.0 \
		--out models/cifar10-staged --run-dir runs/staged/agent-run
	$(PY) scripts/calibration_set.py models/cifar10-staged --data-dir $(DATA)

## make train-imdb: retrain the embedded IMDB default on CPU, three fits (see docs/training.md)
train-imdb: $(STAMP)
	$(PY) -m training fit --preset text-cpu --dataset imdb --data-dir $(DATA) \
		--out runs/imdb-base/ckpt --run-dir runs/imdb-base/run
	$(PY) -m training fit --preset text-cpu-loops --dataset imdb --data-dir $(DATA) \
		--init-from runs/imdb-base/ckpt --out runs/imdb-loops/ckpt --run-dir runs/imdb-loops/run
	$(PY) -m training fit --preset text-cpu-agent --dataset imdb --data-dir $(DATA) \
		--init-from runs/imdb-loops/ckpt --name imdb --version 0.3.0 --out checkpoints/imdb \
		--run-dir runs/imdb-agent/run

## make evaluate: re-measure the embedded CIFAR-10 default on the full test set
evaluate: $(STAMP)
	$(PY) -m training evaluate checkpoints/cifar10 --data-dir $(DATA)

## make report: regenerate reports/README.md from reports/*/results.json
report: $(STAMP)
	$(PY) -m training experiment page

## make experiments [DATA=data] [RECIPE=--reduced]: every chapter-4 experiment, then the page
experiments: $(STAMP)
	$(PY) -m training experiment all --data-dir $(DATA) $(RECIPE)

## make bench-serve: both loop schedulings side by side under real-image load, and the raw engine
bench-serve: $(STAMP)
	$(PY) -m benchmarks.serve --model-dir checkpoints --out reports/bench_serve.json

## make bench-peers: ours (fp32 NCHW, fp32 channels_last, its defaults) against LitServe on the
## same checkpoint, the same PNG uploads, 1 / 8 / 32 clients, new connections and keep-alive,
## interleaved rounds (load from wrk when installed: apt-get install wrk)
bench-peers: $(STAMP)
	$(PY) -m benchmarks.peers --checkpoint checkpoints/cifar10 --data-dir $(DATA) \
		--servers "litserve,ours fp32,ours fp32 nhwc,ours default,ours default thread" \
		--json reports/bench_peers.json

## make bench-engines [CHECKPOINT=checkpoints/cifar10]: the PyTorch and ONNX Runtime engines side by side,
## then every precision × layout of the PyTorch engine on CIFAR-10 test images (ratios to fp32 NCHW)
CHECKPOINT ?= checkpoints/cifar10
bench-engines: $(STAMP)
	$(PY) -m benchmarks.engines $(CHECKPOINT) --json reports/bench_engines.json
	$(PY) -m benchmarks.precisions $(CHECKPOINT) --data-dir $(DATA) --batch-size 32 \
		--json reports/bench_precisions.json

## make bench-protocols: JSON, binary and gRPC wire formats on one spawned server
bench-protocols: $(STAMP)
	$(PY) -m benchmarks.protocols --model-dir checkpoints --out reports/bench_protocols.json

## make bench-connection-guard: the guard's CPU per request and the attacks, guarded vs bare h11
bench-connection-guard: $(STAMP)
	$(PY) -m benchmarks.connection_guard --model-dir checkpoints --rounds 3 \
		--out reports/bench_connection_guard.json

## make bench-ray: Ray Serve with 1 and 2 replicas against the single-process server
bench-ray: $(STAMP)
	$(PY) -m benchmarks.ray_replicas --model-dir checkpoints --out reports/bench_ray.json

## make reliability: fuzzing, hostile corpus, 4x overload, SIGTERM drain, model faults, limits,
## and the connection attacks at full size (make test runs them CI-sized)
reliability: $(STAMP)
	DYNALAY_ATTACK_SCALE=full timeout 900 $(PY) -m pytest tests/reliability -q -m "not slow"

## make reliability-soak: the above plus minutes of overload with an RSS drift check
reliability-soak: $(STAMP)
	DYNALAY_ATTACK_SCALE=full timeout 1800 $(PY) -m pytest tests/reliability -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
