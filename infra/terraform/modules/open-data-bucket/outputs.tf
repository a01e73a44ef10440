output "arn" {
  description = "ARN of the open-data bucket, for the archiver's IAM policy."
  value       = aws_s3_bucket.this.arn
}
