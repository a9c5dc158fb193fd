output "trust_domains" {
  value = module.federation.trust_domains
}

output "links" {
  value = module.federation.links
}

output "join_tokens" {
  value     = module.federation.join_tokens
  sensitive = true
}

output "ca" {
  value     = module.federation.ca
  sensitive = true
}

output "aws_roots_pem" {
  description = "Root certificates that verify aws-use1's workloads."
  value       = data.meshfed_trust_bundle.aws.roots_pem
}
