"""What a mesh folder declares: its catalogue, standard operations, checks, certificates."""
