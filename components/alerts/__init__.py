"""Alerts (lifecycle stage 6): an :class:`~components.alerts.alert.Alert` model, pure
routing with dedupe (``routing``), the dedupe state file (``state``), the dispatch that
retries and reports failing channels (``dispatch``), the channels built from a problem's
alert spec (``build``) and the channels themselves, one module each under ``channels/``.
Importing this package imports none of them."""
