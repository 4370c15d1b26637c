"""The `meshplane` client commands that talk to a coordinator."""
