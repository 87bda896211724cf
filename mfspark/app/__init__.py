"""The jobs' bodies (``train``, ``tune``, ``recommend``, ``evaluate``, ``generate``,
``benchmark``, each with a ``main``), the session they build, their flags and reports.
``jobs/*.py`` and the ``mfspark-*`` console scripts call these ``main`` functions."""
