# The Airsight image: Airflow (any component, CeleryExecutor), the pipelines library, MLflow and the
# serving API. Two stages: the first builds a virtual environment (compilers and headers are there
# only); the second copies that environment into a clean slim image that runs as a non-root user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch first, so nothing pulls the CUDA packages.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
# Not editable: the suites travel as package data (pipelines/expectations) inside the install.
RUN pip install ".[deploy]"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow AIRSIGHT_HOME=/data/airsight AIRSIGHT_GROUPS_DIR=/data/groups.d \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airsight/dags AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airsight/plugins \
    AIRSIGHT_DAGS_FOLDER=/opt/airsight/dags
# libpq for PostgreSQL clients; no compiler or header comes into this stage. UID 50000 and group
# 0, as in Airflow's own image, so volumes made for it fit.
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home --shell /usr/sbin/nologin airsight \
    && mkdir -p /data/airsight /data/groups.d /opt/airsight \
    && chown -R airsight:0 /data /opt/airflow && chmod -R g+rwX /data /opt/airflow
COPY --from=build /opt/venv /opt/venv
COPY --chown=root:0 dags /opt/airsight/dags
COPY --chown=root:0 plugins /opt/airsight/plugins
USER airsight
WORKDIR /opt/airflow
