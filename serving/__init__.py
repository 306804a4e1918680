"""BentoML service `Ensemble`: the production ensemble over HTTP (DESIGN.md §3.4).

Start it with ``python -m serving.serve`` (``make serve``); read the modules in this order:

* ``service``   — the BentoML service: endpoints, model references, reload, logging
* ``predictor`` — what each endpoint answers, every refusal (plain Python, no BentoML)
* ``features``  — online snapshots (Feast), point-in-time offline rows, sequence history
* ``scoring``   — the loaded model, confidence and direction
* ``schemas``, ``errors``, ``config``, ``middleware`` — request/response models, error shape, settings, JSON-only bodies
* ``serve``, ``demo`` — the start command, and start → query → stop for the demo
"""
