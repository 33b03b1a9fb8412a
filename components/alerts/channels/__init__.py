"""Alert channels, one module per member behind the ``Channel`` protocol of ``base``:
``log``, ``jsonl``, ``webhook`` (Slack-compatible), ``sns`` and ``prefect_block``.
Adding a channel is adding a module here and a branch in ``components.alerts.build``."""
