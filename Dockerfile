# mfspark in one image for the driver, the executors and the tests, so that every process runs
# the same Python, numpy, pandas and pyarrow (pandas UDFs need matching versions on both sides).
# The versions are the pins of constraints.txt, the file `make install` uses too.
#
#   docker build --network host -t mfspark:0.1.0 .
#
# Layers, from the least to the most often changed: Java, the user, the Python dependencies
# (from constraints.txt only), then the sources. Editing the sources, pyproject.toml included,
# rebuilds only the last two small layers: pyspark (built from its 456 MB source archive) and
# numpy are not downloaded or built again. Manual page: docs/docker.md.
FROM python:3.11-slim-bookworm

# Spark 4.3 needs Java 17 or 21; make runs the install and the demo; procps gives Spark's
# scripts `ps`. (slim images lack the man directory the JRE's post-install step links into)
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless make procps \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Everything runs as an unprivileged user (uid 1000) that owns the project and /data.
RUN useradd --create-home --uid 1000 mfspark \
 && mkdir -p /opt/mfspark /data \
 && chown mfspark:mfspark /opt/mfspark /data
USER mfspark
WORKDIR /opt/mfspark

# No pip cache in the image (it would only hold a second copy of the wheels).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependencies: constraints.txt pins every runtime, test and report dependency (direct and
# transitive), so it is installed as it stands, into the virtual environment `make install`
# uses. This layer depends on constraints.txt alone.
COPY --chown=mfspark:mfspark constraints.txt ./
RUN python3.11 -m venv .venv \
 && .venv/bin/pip install --quiet --upgrade -c constraints.txt pip \
 && .venv/bin/pip install --quiet -r constraints.txt

# The sources, and mfspark itself (editable), by the same `make install` as CI; the dependencies
# are already there at the pinned versions, so this only builds the package. `pip check` fails
# the build if pyproject.toml asks for something constraints.txt does not pin consistently.
COPY --chown=mfspark:mfspark . .
RUN make install PYTHON=python3.11 \
 && .venv/bin/pip check \
 && rm -rf /home/mfspark/.cache

ENV PATH=/opt/mfspark/.venv/bin:/opt/mfspark/.venv/lib/python3.11/site-packages/pyspark/bin:$PATH \
    SPARK_HOME=/opt/mfspark/.venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/opt/mfspark/.venv/bin/python \
    SPARK_NO_DAEMONIZE=1

# Output of the compose services (a volume shared by the driver and the workers).
VOLUME /data
CMD ["make", "demo"]
