# kinlog on AWS: the Kinesis stream apps write to, the DynamoDB lease table the workers share,
# the S3 archive they write, the KMS key that encrypts stream and archive, least-privilege
# IAM for producers and consumers (iam.tf) and the Glue table Athena queries (glue.tf).

data "aws_caller_identity" "current" {}

locals {
  stream_name        = coalesce(var.stream_name, "${var.name}-logs")
  lease_table_name   = coalesce(var.lease_table_name, "${var.name}-leases")
  bucket_name        = coalesce(var.bucket_name, "${var.name}-archive-${data.aws_caller_identity.current.account_id}")
  glue_database_name = coalesce(var.glue_database_name, replace(var.name, "-", "_"))

  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn
  s3_uses_kms    = var.s3_sse_algorithm == "aws:kms"
}

# ---- KMS ----------------------------------------------------------------------------------

# One customer managed key for the stream and the archive. Its key policy is the default one
# (the account administers the key), so the IAM policies in iam.tf are what grant its use.
resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "${var.name}: Kinesis stream and S3 archive encryption"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

# ---- Kinesis --------------------------------------------------------------------------------

resource "aws_kinesis_stream" "this" {
  name             = local.stream_name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = local.kms_key_arn

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  tags = var.tags
}

# ---- DynamoDB lease table ---------------------------------------------------------------------

# KCL-compatible lease table: one item per shard, hash key leaseKey. On-demand billing (as the
# KCL creates it) and point-in-time recovery: the checkpoints are the consumer's position.
# Encrypted at rest with the DynamoDB-owned key (the default), so workers need no KMS grant.
resource "aws_dynamodb_table" "leases" {
  name                        = local.lease_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "leaseKey"
  deletion_protection_enabled = var.lease_table_deletion_protection

  attribute {
    name = "leaseKey"
    type = "S"
  }
  attribute {
    name = "leaseOwner"
    type = "S"
  }

  # The KCL 3.x's owner index, which consumer.lease_assignment: leader queries for each
  # worker's leases (checkpoint/dynamodb.OwnerIndexName).
  global_secondary_index {
    name            = "LeaseOwnerToLeaseKeyIndex"
    hash_key        = "leaseOwner"
    range_key       = "leaseKey"
    projection_type = "KEYS_ONLY"
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = var.tags
}

# The coordinator table of consumer.lease_assignment: leader: one heartbeat item per worker
# and the leader lease, in the lease table's schema (never in the lease table, which the KCL
# may share). Empty while the workers scan.
resource "aws_dynamodb_table" "coordinator" {
  name                        = "${local.lease_table_name}-coordinator"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "leaseKey"
  deletion_protection_enabled = var.lease_table_deletion_protection

  attribute {
    name = "leaseKey"
    type = "S"
  }

  tags = var.tags
}

# ---- S3 archive -----------------------------------------------------------------------------

resource "aws_s3_bucket" "archive" {
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket = aws_s3_bucket.archive.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: the bucket owner owns every object.
resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.s3_sse_algorithm
      kms_master_key_id = local.s3_uses_kms ? local.kms_key_arn : null
    }
    # Bucket keys cut KMS requests (and their cost) by orders of magnitude.
    bucket_key_enabled = local.s3_uses_kms
  }
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id

  versioning_configuration {
    status = var.bucket_versioning
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "archive-tiering"
    status = "Enabled"

    filter {}

    dynamic "transition" {
      for_each = var.transition_to_ia_days > 0 ? [var.transition_to_ia_days] : []
      content {
        days          = transition.value
        storage_class = "STANDARD_IA"
      }
    }

    dynamic "transition" {
      for_each = var.transition_to_glacier_days > 0 ? [var.transition_to_glacier_days] : []
      content {
        days          = transition.value
        storage_class = var.glacier_storage_class
      }
    }

    dynamic "expiration" {
      for_each = var.expiration_days > 0 ? [var.expiration_days] : []
      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.bucket_versioning != "Disabled" && var.noncurrent_version_expiration_days > 0 ? [var.noncurrent_version_expiration_days] : []
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }

  # A worker that dies mid multipart upload leaves parts behind; its replay writes the object
  # again, so the stale parts are garbage.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  lifecycle {
    precondition {
      condition     = var.transition_to_ia_days == 0 || var.transition_to_glacier_days == 0 || var.transition_to_glacier_days > var.transition_to_ia_days
      error_message = "transition_to_glacier_days must be later than transition_to_ia_days."
    }
  }
}

# Refuse plain-HTTP requests to the archive.
resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.archive]
}

data "aws_iam_policy_document" "archive_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
