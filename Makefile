# Two commands a newcomer needs:  make run   (set up + dvc repro)   and   make test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup broker stream serve bench-stream bench-serve run test test-e2e test-all params deps lock verify seeds paper feature-shift bench-gp bench-gp-cost-floor bench-gp-compile bench-gp-hyper-subset bench-pipeline-time bench-run-time clean mlflow-ui plots

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) broker  ## create .venv with the locked dependencies and the package (editable), and the local broker

# The stream's end-to-end tests start a real local broker: redis-server, Debian's package.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
broker:  ## install redis-server (Debian package) if it is missing
	@command -v redis-server >/dev/null || { echo "installing redis-server (Debian package) for the stream tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

run: setup params  ## refresh params.yaml from conf/, run the whole default pipeline offline (built-in simulator)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	@echo ""
	@echo "Report: reports/index.md (every figure in reports/figures/ as PNG and PDF, every metric file)"
	@$(BIN)/python -c "import json; m=json.load(open('reports/transients/metrics.json')); print(f\"transients: accuracy {m['accuracy']:.3f}   macro-F1 {m['macro_f1']:.3f}   (reports/transients/)\")"
	@$(BIN)/python -c "import json; m=json.load(open('reports/transits/metrics.json')); s=m['segment']; print(f\"transits: segment ROC-AUC {s['roc_auc']:.3f}   star ROC-AUC {m['star']['roc_auc']:.3f}   (reports/transits/)\")"
	@$(BIN)/python -c "import json; m=json.load(open('reports/stellar/metrics.json')); print(f\"stellar: Teff MAE {m['teff_mae']:.0f} K   logg {m['logg_mae']:.3f} dex   [Fe/H] {m['feh_mae']:.3f} dex   macro-F1 {m['macro_f1']:.3f}   (reports/stellar/)\")"

stream: setup  ## the test split as a simulated ZTF alert stream, classified by the trained model (replay; needs make run first)
	$(BIN)/python -m deeprubin.stream stream.mode=simulate
	$(BIN)/python -m deeprubin.stream

serve: setup  ## the scoring API on 127.0.0.1 (serve.* in conf/serve/default.yaml; tokens: python -m deeprubin.serve.tokens create --name NAME; docs/serve.md)
	$(BIN)/python -m deeprubin.serve

test: setup  ## unit tests + the in-process tiny pipeline (~5 min on 2 cores; no DVC pipelines, network, GPU or slow tests)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not e2e and not slow and not network and not gpu" --durations=20

test-e2e: setup  ## the pipeline-level tests: tiny DVC repos, sweeps, the MLflow server, numerics emulation (~15 min)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -n 2 --dist loadfile -q -m "e2e and not slow and not network and not gpu" --durations=20

test-all: setup  ## everything except network and gpu tests
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not network and not gpu"

params: setup  ## recompose conf/ into params.yaml (as `dvc exp run` does); says when it changed
	@$(BIN)/python -c "from pathlib import Path; from deeprubin.core.config import write_params; \
	old = Path('params.yaml').read_bytes() if Path('params.yaml').exists() else b''; write_params('params.yaml'); \
	print('params.yaml refreshed from conf/' if Path('params.yaml').read_bytes() != old else 'params.yaml matches conf/')"

deps: setup  ## rewrite the src/ deps of every dvc.yaml stage from its import closure (tests/test_dvc_deps.py checks it)
	$(BIN)/python -m deeprubin.core.deps

lock:  ## refresh requirements/lock.txt from the current environment
	{ head -3 requirements/lock.txt; $(BIN)/pip freeze | grep -v -i '^-e\|^deeprubin\|^# Editable' | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > requirements/lock.tmp && mv requirements/lock.tmp requirements/lock.txt

bench-stream: setup  ## stream classifier throughput on a replayed simulated stream vs the batch predict path (reports/benchmarks/stream.json; needs make run)
	$(BIN)/python -m benchmarks.stream

bench-serve: setup  ## load test of the scoring service: a real server, 16 closed-loop clients x 60 s, a 100,000-object batch upload vs the batch predict path (reports/benchmarks/serve.json; needs make run first; ~30 min on 2 cores)
	$(BIN)/python -m benchmarks.serve_load

bench-gp: setup  ## GP throughput + held-out quality vs scikit-learn and george (reports/benchmarks/gp_throughput.*; ~2-5 min)
	$(BIN)/python -m benchmarks.gp_throughput

bench-gp-cost-floor: setup  ## the LAPACK/BLAS cost floor of an exact GP fit (reports/benchmarks/gp_cost_floor.json)
	$(BIN)/python -m benchmarks.gp_cost_floor

bench-gp-compile: setup  ## torch.compile of the GP evaluation vs eager (reports/benchmarks/gp_compile.json)
	$(BIN)/python -m benchmarks.gp_compile

bench-gp-hyper-subset: setup  ## subset-of-data hyperparameters: speed and held-out NLPD (reports/benchmarks/gp_hyper_subset.json)
	$(BIN)/python -m benchmarks.gp_hyper_subset

verify: setup  ## clone HEAD, rerun the whole `dvc repro` there, fail listing every output whose hash differs from dvc.lock (~20 min on 2 cores)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m deeprubin.core.verify

seeds: setup  ## headline numbers as mean +- std over 5 training seeds (+2 data seeds) -> reports/benchmarks/seeds.json (~7 min a run on 2 cores)
	$(BIN)/python -m benchmarks.seeds

paper: setup  ## the paper profile (experiment=paper: ~10x the simulated objects and stars), both tasks, one seed -> reports/benchmarks/paper.json (transients estimated ~1 h, transits ~30 min on 2 cores)
	$(BIN)/python -m benchmarks.seeds --tasks transients transits --seeds 42 --data-seeds --base experiment=paper --workdir /tmp/deeprubin_paper --out reports/benchmarks/paper.json

feature-shift: setup  ## simulated vs real BTS SN Ia features, per photometry option (reports/benchmarks/feature_shift.json; needs dvc repro and ../shared/data/real; ~1 min)
	$(BIN)/python -m benchmarks.feature_shift

bench-pipeline-time: setup  ## stage times and GP throughput with and without the numerics pinning (reports/benchmarks/pipeline_time.json; ~20 min)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m benchmarks.pipeline_time

bench-run-time: setup  ## one `dvc repro` of the default pipeline in a fresh clone, timed per stage and per task (reports/benchmarks/run_time.json; ~8 min)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m benchmarks.pipeline_time --repro --repeats 1 --out reports/benchmarks/run_time.json

mlflow-ui: setup  ## browse tracked runs at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db

plots: setup  ## render DVC plots to dvc_plots/index.html
	$(BIN)/dvc plots show

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data/raw data/processed data/splits models reports/transients outputs multirun
