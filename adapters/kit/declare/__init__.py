"""What a mesh folder declares: the mesh, its operations, their sources and checks, certificates."""
