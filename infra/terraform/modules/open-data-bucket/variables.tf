variable "bucket" {
  description = "Name of the open-data bucket (the local stack's is hbus-open-data)."
  type        = string
}

variable "access_log_bucket" {
  description = "An existing bucket, owned by the platform, that receives the server access logs."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it expires."
  type        = number
  default     = 90
}
