"""kwok-style simulated controllers: one reconciler per kind, over one shared work queue."""
