variable "topics" {
  description = "Topic name -> partitions, replication factor and topic config (min.insync.replicas included), as rendered by `hbus infra render`."
  type = map(object({
    partitions         = number
    replication_factor = number
    config             = map(string)
  }))

  validation {
    condition     = alltrue([for t in values(var.topics) : t.replication_factor >= 3 && tonumber(t.config["min.insync.replicas"]) >= 2])
    error_message = "Production keeps three copies of every partition and acknowledges a write on two: re-render with `hbus infra render`."
  }
}

variable "acls" {
  description = "ALLOW ACLs keyed by a stable id, as rendered by `hbus infra render`; everything else is denied."
  type = map(object({
    principal     = string
    resource_type = string
    resource_name = string
    pattern       = string
    operation     = string
  }))

  validation {
    condition     = alltrue([for acl in values(var.acls) : acl.resource_name != "*" && acl.resource_name != ""])
    error_message = "A wildcard ACL would grant more than the topology model: name every topic, group or prefix."
  }
}

variable "default_topic_config" {
  description = "Config every topic gets unless the model sets the same key (replication and min.insync.replicas come from the model)."
  type        = map(string)
  default     = {}
}

variable "cluster" {
  description = "\"private\" or \"public\". The public cluster takes only public.* topics, and only its writer may write."
  type        = string

  validation {
    condition     = contains(["private", "public"], var.cluster)
    error_message = "cluster is \"private\" or \"public\"."
  }
}

variable "public_writer" {
  description = "The one principal that may write to the public cluster (the egress processor, behind the boundary guard)."
  type        = string
  default     = "User:svc-egress"
}
