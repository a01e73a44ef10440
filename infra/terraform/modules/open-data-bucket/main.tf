# The open-data bucket: Avro files of public events, readable by anyone, written only by the archiver
# (whose IAM identity the platform grants s3:PutObject on this bucket).

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_145:Open data is read anonymously, and anonymous GETs of SSE-KMS objects fail; SSE-S3 (AES256) is set below.
  # checkov:skip=CKV_AWS_144:Open data is re-creatable from the private cluster; cross-region replication is the platform's choice.
  # checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; readers list the per-day _manifest.json instead.
  # checkov:skip=CKV2_AWS_6:It has a public access block (below) that blocks ACLs but, for open data, not the public-read policy.
  bucket = var.bucket
}

resource "aws_s3_bucket_public_access_block" "this" {
  # checkov:skip=CKV_AWS_54:Open data: the public-read bucket policy below is the purpose of this bucket.
  # checkov:skip=CKV_AWS_56:Open data: anonymous reads must not be restricted.
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "public_read" {
  # checkov:skip=CKV_AWS_70:Anyone may s3:GetObject, and only that: publishing open data is this bucket's purpose.
  bucket     = aws_s3_bucket.this.id
  depends_on = [aws_s3_bucket_public_access_block.this]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "OpenDataPublicRead"
        Effect    = "Allow"
        Principal = "*"
        Action    = ["s3:GetObject"]
        Resource  = "${aws_s3_bucket.this.arn}/*"
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.bucket}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket     = aws_s3_bucket.this.id
  depends_on = [aws_s3_bucket_versioning.this]

  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}
