"""The adapter's gRPC doors: the native MeshAdapterService and Meshery's MeshService."""
