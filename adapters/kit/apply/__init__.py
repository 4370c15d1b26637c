"""A plan into one cluster: session, install, upgrade, uninstall, inventory, readiness."""
