"""The log channel: each alert as one record on a Python logger, at the level its severity
maps to, with the payload attached as ``record.alert`` for structured handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from components.alerts.alert import Alert

LOGGER_NAME = "mlops.alerts"
LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "alert": logging.ERROR}


@dataclass(frozen=True)
class LoggingChannel:
    """Logs to ``logger_name``; the handlers and format are the application's business."""

    name: str = "log"
    logger_name: str = LOGGER_NAME

    def send(self, alert: Alert) -> None:
        logging.getLogger(self.logger_name).log(
            LEVELS[alert.severity], "%s", alert.body(), extra={"alert": alert.payload()}
        )
