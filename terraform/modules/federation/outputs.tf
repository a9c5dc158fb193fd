output "trust_domains" {
  description = "Cluster name to its SPIFFE trust domain."
  value       = { for name, c in meshfed_cluster.this : name => c.trust_domain }
}

output "join_tokens" {
  description = "Cluster name to its single-use bootstrap token for `meshfed agent` and `meshfed gateway` (valid 1 h from creation)."
  value       = { for name, c in meshfed_cluster.this : name => c.join_token }
  sensitive   = true
}

output "ca" {
  description = "Cluster name to its CA material: `istio` (cacerts Secret files) and `linkerd` (trust anchor and issuer files). Needs an admin token."
  value = {
    for name, c in meshfed_cluster.this : name => {
      istio   = c.istio
      linkerd = c.linkerd
    }
  }
  sensitive = true
}

output "links" {
  description = "Link (`<cluster>/<cluster>`, names sorted) to its Ready status."
  value       = { for key, l in meshfed_link.this : key => l.status }
}
