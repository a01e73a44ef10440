output "arn" {
  description = "ARN of the audit bucket, for the audit writer's IAM policy."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "The key the audit writer's IAM policy must allow kms:GenerateDataKey and kms:Decrypt on."
  value       = aws_kms_key.this.arn
}
