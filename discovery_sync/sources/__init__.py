"""Endpoint sources: what the local cluster offers, as meshfed records.

`kube` translates Kubernetes objects (Services, EndpointSlices, MCS ServiceExports),
`static` reads the YAML file used for VMs, bare metal and the demo. Both are pure:
the watch loop and the file poller that feed them live in the shells.
"""
