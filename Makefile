# napari-unet: `make demo` runs the main job, `make test` runs the whole test suite.
# Both set everything up first (once; re-running is fast when nothing changed).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test lint bench screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

# With a display: napari opens with the sample data and the widgets docked.
# Without one: the same workflow headless (train, predict, write the labels, say where).
demo: setup
	$(PY) -m napari_unet.demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/npe2 validate napari-unet

bench: setup
	$(PY) -m pip install -q --no-binary elasticdeform elasticdeform scikit-learn
	for script in benchmarks/bench_*.py; do xvfb-run -a $(PY) $$script || exit 1; done

screenshots: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots.py --gif

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
