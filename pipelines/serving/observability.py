"""Structured logs (one JSON object a line) and Prometheus metrics for the serving API.

With several uvicorn workers each process counts its own requests; set
``PROMETHEUS_MULTIPROC_DIR`` (``airsight serve --workers N`` does) and /metrics adds up all
of them, as prometheus_client's multiprocess mode documents.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Send the airsight loggers (and uvicorn's errors) to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("airsight", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter("airsight_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram(
            "airsight_request_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.events = Counter("airsight_events_stored", "Events stored by PutEvents", ["group"], registry=self.registry)
        self.swaps = Counter("airsight_model_swaps", "Models swapped in", ["group"], registry=self.registry)
        self.load_failures = Counter("airsight_model_load_failures", "Model versions that failed to load", ["group"],
                                     registry=self.registry)  # fmt: skip
        self.model_version = Gauge("airsight_model_version", "Serving model version", ["group"],
                                   registry=self.registry, multiprocess_mode="max")  # fmt: skip

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
