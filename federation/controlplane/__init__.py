"""The registry's gRPC control plane: what agents and gateways talk to.

Deliberately imports nothing: `federation.client` imports the generated messages
(`meshfed_pb2`) and the wire conversions (`convert`) from this package, and must
not pull the server (`server`, `service`, `watch`, `reports`) in with them.

Modules:
  meshfed.proto, meshfed_pb2*.py  the protocol (generated: scripts/gen-proto)
  convert      pure: model records <-> protobuf messages (shared with the client)
  settings     the knobs and where their defaults come from
  identity     pure: the caller's SPIFFE identity and what it may do
  status       federation errors -> gRPC status, once, at the boundary
  projection   pure: store state and changes -> a cluster's Watch view and deltas
  health       pure: probe results -> link conditions and gateway health
  reports      pure: checking and planning ReportEndpoints messages
  watch        shell: one Watch stream (store feed, resume, heartbeats)
  service      shell: the servicers (Join, SignCSR, ReportEndpoints, Watch, ReportHealth)
  server       shell: `start()`, TLS credentials, the two listeners
"""
