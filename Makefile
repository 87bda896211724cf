# The two commands: `make demo` (train on the embedded sample) and `make test`.
# Both bootstrap a local virtual environment (.venv) with the pinned dependencies first.
# Java 17 or 21 is the one system prerequisite.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mfspark-installed
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test install java clean

demo: $(STAMP)
	$(BIN)/python jobs/train.py --config conf/default.toml --out output/demo --overwrite \
		--baselines --show 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

install: $(STAMP)

java:
	@bash .ci/check-java

$(STAMP): pyproject.toml | java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) output build dist *.egg-info .pytest_cache
