# Everything a newcomer needs: `make test` builds .venv from nothing and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp changes with pyproject.toml, so a dependency change reinstalls and an unchanged one costs nothing.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: venv test demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# pytest exits 5 when it collects no test; that is reported, not hidden as success of real tests.
test: venv
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# The main job on local Ray (CPU): generate a sample video with known ground truth, label it, render a preview,
# and evaluate against the ground truth (random-weight output: the evaluation says so).
DEMO := out/demo
demo: venv
	$(BIN)/python -m jobs.make_sample --out $(DEMO)/sample
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m jobs.label --input $(DEMO)/sample/walkers.mp4 \
		--output $(DEMO)/labels --config configs/demo.yaml --set detector.weights=$(DEMO)/sample/walkers_dets.json
	$(BIN)/python -m jobs.render --output $(DEMO)/labels --dest $(DEMO)/preview --boxes
	$(BIN)/python -m jobs.evaluate --output $(DEMO)/labels --gt $(DEMO)/sample/walkers_gt.json --kind coco
	@echo "keypoint tables: $(DEMO)/labels/poses  frames: $(DEMO)/labels/frames  preview: $(DEMO)/preview"

bench: venv
	$(BIN)/python -m benchmarks.sppe

clean:
	rm -rf $(VENV) .pytest_cache
