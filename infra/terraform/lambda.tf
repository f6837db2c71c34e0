# Serverless mode: the archive sink as a Lambda function (cmd/kinlog-lambda) on a Kinesis
# event source mapping, instead of the `kinlog consume` workers. It archives the same stream
# into the same bucket under the same keys, encrypted with the same key, so the Glue table
# reads both. Opt-in: nothing here is created unless lambda_zip names the function's zip
# (`make lambda`), and the worker-only deployment is unchanged.
#
# Run one mode at a time on a stream: the workers and the function would each archive every
# record.
#
# The function keeps its own progress per shard in a DynamoDB table (not the workers' lease
# table): the Lambda service owns the shard iterators and checkpoints; the table holds the
# position up to which the shard is archived and the objects of an attempt not yet
# committed, so that a retried or re-cut batch archives each record once (package lambda).

locals {
  lambda_enabled = var.lambda_zip != null && var.lambda_zip != ""

  lambda_function_name       = "${var.name}-archiver"
  lambda_progress_table_name = "${var.name}-lambda-progress"
  lambda_failures_bucket     = "${var.name}-lambda-failures-${data.aws_caller_identity.current.account_id}"
}

# ---- Progress table ---------------------------------------------------------------------------

# One item per shard, hash key shard ("<stream>/<shard id>"), written with conditional
# updates. On-demand billing and point-in-time recovery like the lease table: it is the
# function's exactly-once state. Encrypted at rest with the DynamoDB-owned key (the default),
# as the lease table is, so the function needs no KMS grant for it.
resource "aws_dynamodb_table" "lambda_progress" {
  count = local.lambda_enabled ? 1 : 0

  name                        = local.lambda_progress_table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "shard"
  deletion_protection_enabled = var.lambda_progress_table_deletion_protection

  attribute {
    name = "shard"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = var.tags
}

# ---- Bucket for failed batches ------------------------------------------------------------------

# The event source mapping's on-failure destination: when a batch runs out of retries or
# records grow older than lambda_maximum_record_age_in_seconds, Lambda discards it from the
# stream and writes the whole invocation record here (the records included). `kinlog replay`
# archives them from here. Private, TLS only, encrypted like the archive.
resource "aws_s3_bucket" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket        = local.lambda_failures_bucket
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket = aws_s3_bucket.lambda_failures[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket = aws_s3_bucket.lambda_failures[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket = aws_s3_bucket.lambda_failures[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.s3_sse_algorithm
      kms_master_key_id = local.s3_uses_kms ? local.kms_key_arn : null
    }
    bucket_key_enabled = local.s3_uses_kms
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket = aws_s3_bucket.lambda_failures[0].id

  # Replay failed batches (`kinlog replay`) before they expire: the stream no longer has them.
  dynamic "rule" {
    for_each = var.lambda_failures_expiration_days > 0 ? [var.lambda_failures_expiration_days] : []
    content {
      id     = "expire-failed-batches"
      status = "Enabled"

      filter {}

      expiration {
        days = rule.value
      }
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_policy" "lambda_failures" {
  count = local.lambda_enabled ? 1 : 0

  bucket = aws_s3_bucket.lambda_failures[0].id
  policy = data.aws_iam_policy_document.lambda_failures_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.lambda_failures]
}

data "aws_iam_policy_document" "lambda_failures_bucket" {
  count = local.lambda_enabled ? 1 : 0

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lambda_failures[0].arn, "${aws_s3_bucket.lambda_failures[0].arn}/*"]

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

# ---- Logs -------------------------------------------------------------------------------------

# Created here, with a retention, rather than by Lambda on first use (which keeps logs
# forever); the role is therefore not granted logs:CreateLogGroup.
resource "aws_cloudwatch_log_group" "lambda" {
  count = local.lambda_enabled ? 1 : 0

  name              = "/aws/lambda/${local.lambda_function_name}"
  retention_in_days = var.lambda_log_retention_days
  tags              = var.tags
}

# ---- IAM --------------------------------------------------------------------------------------

# Least privilege, checked like iam.tf's policies: infra/deploytest derives the function's
# own actions from the AWS client interfaces of lambda/ (lambda.S3API = the archive sink's
# sinks/s3.API + DeleteObject, lambda.DynamoDBAPI, lambda.KinesisAPI); the other statements
# are the calls the Lambda service makes with this role, each from the AWS documentation.
data "aws_iam_policy_document" "lambda" {
  count = local.lambda_enabled ? 1 : 0

  # The event source mapping polls the stream with the function's role (standard iterator,
  # https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-create.html); the function
  # itself calls ListShards for a shard's hash-key range. No kinesis:SubscribeToShard: the
  # mapping reads the stream, not an enhanced fan-out consumer.
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.this.arn]
  }

  # The function's progress per shard: a consistent read and conditional updates.
  statement {
    sid       = "ProgressTable"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.lambda_progress[0].arn]
  }

  # Archive objects (the sink's PutObject and multipart uploads, which are authorised as
  # s3:PutObject), aborting a failed multipart upload, and deleting the objects of an attempt
  # that did not commit.
  statement {
    sid       = "WriteArchiveObjects"
    actions   = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/*"]
  }

  # The on-failure destination: Lambda writes discarded batches with the function's role
  # (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html).
  statement {
    sid       = "WriteFailedBatches"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lambda_failures[0].arn}/*"]
  }

  statement {
    sid       = "ListFailedBatches"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lambda_failures[0].arn]
  }

  # The function's output (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html);
  # the log group itself is the one above.
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[0].arn}:*"]
  }

  # Reading the stream decrypts its records; with SSE-KMS, writing an archive object or a
  # failed batch generates a data key and a multipart upload decrypts it again for every part.
  statement {
    sid       = "UseEncryptionKey"
    actions   = local.s3_uses_kms ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.kms_via_services
    }
  }
}

resource "aws_iam_policy" "lambda" {
  count = local.lambda_enabled ? 1 : 0

  name        = "${var.name}-lambda"
  description = "kinlog Lambda function: read ${local.stream_name} through its event source mapping, keep progress in ${local.lambda_progress_table_name}, archive to ${local.bucket_name}."
  policy      = data.aws_iam_policy_document.lambda[0].json
  tags        = var.tags
}

data "aws_iam_policy_document" "lambda_assume" {
  count = local.lambda_enabled ? 1 : 0

  statement {
    sid     = "LambdaService"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  count = local.lambda_enabled ? 1 : 0

  name               = "${var.name}-lambda"
  description        = "kinlog Lambda function ${local.lambda_function_name}: its execution role."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "lambda" {
  count = local.lambda_enabled ? 1 : 0

  role       = aws_iam_role.lambda[0].name
  policy_arn = aws_iam_policy.lambda[0].arn
}

# ---- Function ---------------------------------------------------------------------------------

resource "aws_lambda_function" "archiver" {
  count = local.lambda_enabled ? 1 : 0

  function_name = local.lambda_function_name
  description   = "kinlog: archive ${local.stream_name} to s3://${local.bucket_name}/${var.archive_prefix}"
  role          = aws_iam_role.lambda[0].arn

  # A Go binary named bootstrap on the OS-only runtime (`make lambda` builds it with
  # -tags lambda.norpc, CGO off).
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)

  memory_size = var.lambda_memory_mb
  timeout     = var.lambda_timeout_seconds

  # The worker's configuration keys (`kinlog consume --check` lists them) with the values the
  # worker's ConfigMap (infra/k8s/configmap.yaml) gives them, so that both modes write the
  # same archive and rollups (infra/deploytest compares them); plus the function's own
  # progress table. Keep them in step when the ConfigMap changes.
  environment {
    variables = {
      KINLOG_SINK_S3_BUCKET       = aws_s3_bucket.archive.bucket
      KINLOG_SINK_S3_PREFIX       = "${var.archive_prefix}dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
      KINLOG_SINK_S3_ERROR_PREFIX = "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
      # NDJSON, gzip: what the Glue table (glue.tf) reads.
      KINLOG_SINK_S3_ENCODING    = "ndjson"
      KINLOG_SINK_S3_COMPRESSION = "gzip"
      # The function cuts a batch into objects of about this size, as the worker flushes.
      KINLOG_SINK_S3_FLUSH_SIZE = "5MiB"
      # The archive's default encryption, named explicitly: SSE-KMS without a key id would
      # use the account's aws/s3 key instead of the module's.
      KINLOG_SINK_S3_SSE              = var.s3_sse_algorithm
      KINLOG_SINK_S3_KMS_KEY_ID       = local.s3_uses_kms ? local.kms_key_arn : ""
      KINLOG_ANALYTICS_ENABLED        = "true"
      KINLOG_ANALYTICS_PREFIX         = "analytics/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
      KINLOG_ANALYTICS_WINDOW         = "1m"
      KINLOG_ANALYTICS_DIMENSIONS     = "service,level,status"
      KINLOG_ANALYTICS_NUMERIC_FIELDS = "latency_ms"
      KINLOG_PROGRESS_TABLE           = aws_dynamodb_table.lambda_progress[0].name
      KINLOG_LOG_LEVEL                = var.lambda_log_level
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[0].name
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.lambda]

  lifecycle {
    precondition {
      condition     = !strcontains(basename(var.lambda_zip), var.lambda_architecture == "arm64" ? "amd64" : "arm64")
      error_message = "lambda_zip looks like a build for the other architecture than lambda_architecture (arm64 runs dist/kinlog-lambda-arm64.zip, x86_64 runs dist/kinlog-lambda-amd64.zip)."
    }
  }
}

# ---- Event source mapping ----------------------------------------------------------------------

resource "aws_lambda_event_source_mapping" "archiver" {
  count = local.lambda_enabled ? 1 : 0

  event_source_arn  = aws_kinesis_stream.this.arn
  function_name     = aws_lambda_function.archiver[0].arn
  starting_position = "TRIM_HORIZON"

  batch_size                         = var.lambda_batch_size
  maximum_batching_window_in_seconds = var.lambda_maximum_batching_window_in_seconds

  # Fixed, not a variable: the function's exactly-once protocol requires one batch per shard
  # at a time, in sequence order. Its progress item per shard is advanced by conditional
  # updates that expect the previous batch's end; with a factor above 1 Lambda runs batches of
  # one shard concurrently (ordered per partition key only) and they would race on that item.
  # (AWS also notes that the factor does not work with KPL aggregation, which kinlog's
  # producer uses: https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html.)
  parallelization_factor = 1

  # The function reports the first record it did not archive; Lambda checkpoints before it
  # and retries from it, instead of retrying the whole batch.
  function_response_types = ["ReportBatchItemFailures"]

  bisect_batch_on_function_error = var.lambda_bisect_batch_on_function_error
  maximum_retry_attempts         = var.lambda_maximum_retry_attempts
  maximum_record_age_in_seconds  = var.lambda_maximum_record_age_in_seconds

  destination_config {
    on_failure {
      destination_arn = aws_s3_bucket.lambda_failures[0].arn
    }
  }

  # Lambda checks the role's stream permissions when the mapping is created.
  depends_on = [aws_iam_role_policy_attachment.lambda]
}
