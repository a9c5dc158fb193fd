variable "clusters" {
  description = "Member clusters. Only name, region and zone are required; unset fields take the registry's defaults (trust domain <name>.meshfed.local, network \"default\", source \"static\")."
  type = list(object({
    name              = string
    region            = string
    zone              = string
    trust_domain      = optional(string)
    network           = optional(string)
    gateway_addresses = optional(list(string))
    source            = optional(string)
    labels            = optional(map(string))
  }))

  validation {
    condition     = length(var.clusters) == length(distinct([for c in var.clusters : c.name]))
    error_message = "Cluster names must be unique."
  }
}

variable "topology" {
  description = "How the clusters are linked: \"full-mesh\" (every pair) or \"hub-and-spoke\" (the hub with every other cluster)."
  type        = string
  default     = "full-mesh"

  validation {
    condition     = contains(["full-mesh", "hub-and-spoke"], var.topology)
    error_message = "topology must be \"full-mesh\" or \"hub-and-spoke\"."
  }
}

variable "hub" {
  description = "The hub of a hub-and-spoke topology (default: the first cluster)."
  type        = string
  default     = null
}

variable "link_mode" {
  description = "Mode of every link: \"terminating\" (bridges meshes with different roots) or \"passthrough\" (end-to-end mTLS on a shared root)."
  type        = string
  default     = "terminating"
}

variable "bidirectional" {
  description = "Whether links carry exports both ways. In hub-and-spoke, false means the hub imports from the spokes only."
  type        = bool
  default     = true
}

variable "namespaces" {
  description = "Namespaces the links exchange (empty: every namespace)."
  type        = list(string)
  default     = []
}
