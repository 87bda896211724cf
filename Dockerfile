# mfspark in one image for the driver, the executors and the tests, so that every process runs
# the same Python, numpy, pandas and pyarrow (pandas UDFs need matching versions on both sides).
# The install step is `make install`: the target CI's `make test` bootstraps with.
FROM python:3.11-slim-bookworm

# Spark 4.3 needs Java 17 or 21; make runs the install; procps gives Spark's scripts `ps`.
# (slim images lack the man directory the JRE's post-install step links into)
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless make procps \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 mfspark \
 && mkdir -p /opt/mfspark /data \
 && chown mfspark:mfspark /opt/mfspark /data
USER mfspark
WORKDIR /opt/mfspark

COPY --chown=mfspark:mfspark . .
RUN make install PYTHON=python3.11

ENV PATH=/opt/mfspark/.venv/bin:/opt/mfspark/.venv/lib/python3.11/site-packages/pyspark/bin:$PATH \
    SPARK_HOME=/opt/mfspark/.venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/opt/mfspark/.venv/bin/python \
    SPARK_NO_DAEMONIZE=1

# Output of the compose services (a volume shared by the driver and the workers).
VOLUME /data
CMD ["make", "demo"]
