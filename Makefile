# The two commands: `make demo` (train on the embedded sample) and `make test`.
# Both bootstrap a local virtual environment (.venv) with the pinned dependencies first, through
# `make install` (also the Dockerfile's install step). Java 17 or 21 is the one system prerequisite.
# `make dist` builds what spark-submit ships to executors (see README, "Running on a cluster").

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mfspark-installed
DIST   ?= dist
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test install dist java clean

demo: $(STAMP)
	$(BIN)/python jobs/train.py --config conf/default.toml --out output/demo --overwrite \
		--baselines --show 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

install: $(STAMP)

# A pure-Python wheel (for `pip install` on executor images) and the same archive as a .zip for
# `spark-submit --py-files`: Spark puts only .zip/.egg/.py files on the executors' sys.path.
dist: $(STAMP)
	rm -f $(DIST)/mfspark-*.whl $(DIST)/mfspark-*.zip
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	for w in $(DIST)/mfspark-*-py3-none-any.whl; do cp "$$w" "$${w%-py3-none-any.whl}.zip"; done
	@ls $(DIST)/mfspark-*

java:
	@bash .ci/check-java

# The versions come from constraints.txt (the same pins as the Docker image); a change to it or
# to pyproject.toml reinstalls.
$(STAMP): pyproject.toml constraints.txt | java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip -c constraints.txt
	$(BIN)/pip install -e '.[test,report]' -c constraints.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) output build dist *.egg-info .pytest_cache
