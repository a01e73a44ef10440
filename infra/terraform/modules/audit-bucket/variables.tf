variable "bucket" {
  description = "Name of the audit bucket (the local stack's is hbus-audit)."
  type        = string
}

variable "access_log_bucket" {
  description = "An existing bucket, owned by the platform, that receives the server access logs."
  type        = string
}

variable "retention_days" {
  description = "Object-lock retention (COMPLIANCE mode): no one, root included, can delete or overwrite a record earlier."
  type        = number
  default     = 3650
}
