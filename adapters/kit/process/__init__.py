"""One adapter process: settings, server assembly, the `meshplane adapter` command."""
