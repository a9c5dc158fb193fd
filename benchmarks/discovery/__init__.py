"""Discovery benchmarks: DNS queries/s against NSD, EndpointSlice propagation."""
