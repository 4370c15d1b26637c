"""The coordinator process: registry, routing, event hub, identity, its gRPC services."""
