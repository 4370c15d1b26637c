"""From a catalogue entry and a request to an ordered plan: charts, rendering, manifests."""
