"""The registry: domain model, stores, and (later) the dashboard API, control plane and CLI."""
