variable "mounts" {
  description = "Mount paths: kv (KV v2 holding every identity's Kafka and S3 credentials) and transit."
  type = object({
    kv      = string
    transit = string
  })
}

variable "transit_keys" {
  description = "Transit key name -> key type (hmac for pseudonyms, ed25519 for signing the audit trail)."
  type        = map(string)
}

variable "roles" {
  description = "AppRole name -> policy text and token lifetimes in seconds, one per processor, department and reader."
  type = map(object({
    kind          = string
    policy        = string
    token_ttl     = number
    token_max_ttl = number
  }))
}

variable "approle_path" {
  description = "Where the AppRole auth method is mounted."
  type        = string
  default     = "approle"
}

variable "secret_id_ttl" {
  description = "Lifetime of issued SecretIDs in seconds; 0 = until revoked (SecretIDs are delivered and rotated by the platform)."
  type        = number
  default     = 0
}

variable "person_roles" {
  description = "Policy name -> policy text and token lifetime in seconds, one per person's duty (engineer, approver, operator, auditor); bind each to the matching OIDC or LDAP group."
  type = map(object({
    policy    = string
    token_ttl = number
  }))
  default = {}
}
