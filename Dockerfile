# The Airsight image: Airflow (any component), the pipelines library, MLflow and the serving API.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 AIRFLOW_HOME=/opt/airflow AIRSIGHT_HOME=/data/airsight
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*
# The CPU build of torch first, so nothing pulls the CUDA packages.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /opt/airsight
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
RUN pip install . "apache-airflow-providers-celery>=3.8" "redis>=5"
COPY dags ./dags
COPY plugins ./plugins
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airsight/dags AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airsight/plugins
