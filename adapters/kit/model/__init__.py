"""The kit's data: objects, plans, operation records, and the pure rules over them."""
