# Least-privilege IAM for kinlog.
#
# Each policy grants exactly the API calls the code makes: infra/deploytest derives the
# action lists from the small AWS client interfaces of producer/, consumer/,
# checkpoint/dynamodb, sinks/s3 and query/ and fails when these lists and the code disagree. Every
# statement names the module's own resources; none uses "*".
#
# The policies are standalone managed policies, so they can be attached to roles made
# elsewhere; the roles below are created when something is allowed to assume them.

data "aws_region" "current" {}

locals {
  oidc_issuer = var.eks_oidc_provider_arn == null ? null : element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)

  producer_trusted = (length(var.producer_service_accounts) > 0 && var.eks_oidc_provider_arn != null) || length(var.producer_trusted_principal_arns) > 0 || length(var.producer_trusted_services) > 0
  consumer_trusted = var.eks_oidc_provider_arn != null || length(var.consumer_trusted_principal_arns) > 0
  reader_trusted   = length(var.reader_trusted_principal_arns) > 0

  # The key is only usable through these services (the SSE of the stream and the bucket).
  kms_via_services = [
    "kinesis.${data.aws_region.current.region}.amazonaws.com",
    "s3.${data.aws_region.current.region}.amazonaws.com",
  ]
}

# ---- Producer: apps that embed producer/ (or run `kinlog produce`) ------------------------

data "aws_iam_policy_document" "producer" {
  # PutRecords sends batches; ListShards learns the shards' hash-key ranges so aggregates are
  # routed to the shard each user record's own key maps to.
  statement {
    sid       = "WriteStream"
    actions   = ["kinesis:ListShards", "kinesis:PutRecords"]
    resources = [aws_kinesis_stream.this.arn]
  }

  # Kinesis encrypts each record with a data key generated under the stream's key, on the
  # writer's behalf.
  statement {
    sid       = "EncryptStreamRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.kms_via_services
    }
  }
}

resource "aws_iam_policy" "producer" {
  name        = "${var.name}-producer"
  description = "kinlog producer: write log records to the ${local.stream_name} stream."
  policy      = data.aws_iam_policy_document.producer.json
  tags        = var.tags
}

data "aws_iam_policy_document" "producer_assume" {
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn != null && length(var.producer_service_accounts) > 0 ? [1] : []
    content {
      sid     = "EKSServiceAccounts"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = [for sa in var.producer_service_accounts : "system:serviceaccount:${sa.namespace}:${sa.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.producer_trusted_principal_arns) > 0 ? [1] : []
    content {
      sid     = "TrustedPrincipals"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.producer_trusted_principal_arns
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.producer_trusted_services) > 0 ? [1] : []
    content {
      sid     = "TrustedServices"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = var.producer_trusted_services
      }
    }
  }
}

resource "aws_iam_role" "producer" {
  count = local.producer_trusted ? 1 : 0

  name               = "${var.name}-producer"
  description        = "kinlog producer: write log records to the ${local.stream_name} stream."
  assume_role_policy = data.aws_iam_policy_document.producer_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "producer" {
  count = local.producer_trusted ? 1 : 0

  role       = aws_iam_role.producer[0].name
  policy_arn = aws_iam_policy.producer.arn
}

# ---- Consumer: the `kinlog consume` workers (infra/k8s) -------------------------------------

data "aws_iam_policy_document" "consumer" {
  # Shard discovery and polling reads; enhanced fan-out (consumer.retrieval: fanout)
  # registers the application's stream consumer (and `kinlog checkpoint
  # deregister-consumer` removes it).
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:DeregisterStreamConsumer", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
      "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:RegisterStreamConsumer",
    ]
    resources = [aws_kinesis_stream.this.arn]
  }

  # Enhanced fan-out subscriptions, on the stream's consumers.
  statement {
    sid       = "FanOutSubscribe"
    actions   = ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"]
    resources = ["${aws_kinesis_stream.this.arn}/consumer/*"]
  }

  # Leases and checkpoints (checkpoint/dynamodb), and the coordinator table of
  # consumer.lease_assignment: leader (heartbeats, the leader lease). The tables are created
  # by this module; CreateTable only when the workers are configured to create them.
  statement {
    sid = "LeaseTable"
    actions = concat(
      ["dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
      var.allow_lease_table_creation ? ["dynamodb:CreateTable"] : [],
    )
    resources = [aws_dynamodb_table.leases.arn, aws_dynamodb_table.coordinator.arn]
  }

  # Leader assignment: each worker finds its leases through the owner index.
  statement {
    sid       = "LeaseOwnerIndex"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.leases.arn}/index/*", "${aws_dynamodb_table.coordinator.arn}/index/*"]
  }

  # Archive objects (sinks/s3): single PutObject and multipart uploads (which are authorised
  # as s3:PutObject), aborting a failed multipart upload.
  statement {
    sid       = "WriteArchiveObjects"
    actions   = ["s3:AbortMultipartUpload", "s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]
  }

  # Reading the stream decrypts its records; with SSE-KMS, writing an archive object generates
  # a data key and a multipart upload decrypts it again for every part.
  statement {
    sid       = "UseEncryptionKey"
    actions   = var.s3_sse_algorithm == "aws:kms" ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.kms_via_services
    }
  }
}

resource "aws_iam_policy" "consumer" {
  name        = "${var.name}-consumer"
  description = "kinlog consumer: read ${local.stream_name}, keep leases in ${local.lease_table_name}, archive to ${local.bucket_name}."
  policy      = data.aws_iam_policy_document.consumer.json
  tags        = var.tags
}

data "aws_iam_policy_document" "consumer_assume" {
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn != null ? [1] : []
    content {
      sid     = "EKSServiceAccount"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.consumer_service_account.namespace}:${var.consumer_service_account.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.consumer_trusted_principal_arns) > 0 ? [1] : []
    content {
      sid     = "TrustedPrincipals"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.consumer_trusted_principal_arns
      }
    }
  }
}

resource "aws_iam_role" "consumer" {
  count = local.consumer_trusted ? 1 : 0

  name               = "${var.name}-consumer"
  description        = "kinlog consumer: read ${local.stream_name}, keep leases in ${local.lease_table_name}, archive to ${local.bucket_name}."
  assume_role_policy = data.aws_iam_policy_document.consumer_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "consumer" {
  count = local.consumer_trusted ? 1 : 0

  role       = aws_iam_role.consumer[0].name
  policy_arn = aws_iam_policy.consumer.arn
}

# ---- Reader: people and jobs that run `kinlog query` on the archive --------------------------

data "aws_iam_policy_document" "reader" {
  # Listing finds the objects of the partitions a query's time range selects.
  statement {
    sid       = "ListArchive"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
  }

  statement {
    sid       = "ReadArchiveObjects"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]
  }

  # SSE-KMS objects are decrypted on the reader's behalf.
  dynamic "statement" {
    for_each = var.s3_sse_algorithm == "aws:kms" ? [1] : []
    content {
      sid       = "DecryptArchive"
      actions   = ["kms:Decrypt"]
      resources = [local.kms_key_arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${data.aws_region.current.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_policy" "reader" {
  name        = "${var.name}-reader"
  description = "kinlog query: read the archive in ${local.bucket_name}."
  policy      = data.aws_iam_policy_document.reader.json
  tags        = var.tags
}

data "aws_iam_policy_document" "reader_assume" {
  dynamic "statement" {
    for_each = length(var.reader_trusted_principal_arns) > 0 ? [1] : []
    content {
      sid     = "TrustedPrincipals"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.reader_trusted_principal_arns
      }
    }
  }
}

resource "aws_iam_role" "reader" {
  count = local.reader_trusted ? 1 : 0

  name               = "${var.name}-reader"
  description        = "kinlog query: read the archive in ${local.bucket_name}."
  assume_role_policy = data.aws_iam_policy_document.reader_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "reader" {
  count = local.reader_trusted ? 1 : 0

  role       = aws_iam_role.reader[0].name
  policy_arn = aws_iam_policy.reader.arn
}
