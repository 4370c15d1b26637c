"""The `meshplane` command: one entry point dispatching to each server and client command."""
