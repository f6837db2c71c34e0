variable "name" {
  description = "Prefix of every resource name (stream, table, bucket, roles, Glue database). Default: kinlog."
  type        = string
  default     = "kinlog"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags. Default: none."
  type        = map(string)
  default     = {}
}

# ---- Kinesis ----------------------------------------------------------------------------

variable "stream_name" {
  description = "Kinesis stream name. Default: \"<name>-logs\"."
  type        = string
  default     = null
}

variable "stream_mode" {
  description = "Kinesis capacity mode: ON_DEMAND (scales by itself, billed per GB) or PROVISIONED (shard_count shards). Default: ON_DEMAND."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Number of shards when stream_mode is PROVISIONED (ignored when ON_DEMAND). Each shard takes 1 MiB/s or 1000 records/s of writes. Default: 4."
  type        = number
  default     = 4

  validation {
    condition     = var.shard_count >= 1
    error_message = "shard_count must be at least 1."
  }
}

variable "stream_retention_hours" {
  description = "How long Kinesis keeps records, in hours (24-8760). Longer retention lets a stopped consumer catch up without loss. Default: 24."
  type        = number
  default     = 24

  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be between 24 and 8760."
  }
}

# ---- Encryption -------------------------------------------------------------------------

variable "kms_key_arn" {
  description = "ARN of an existing KMS key (key ARN, not an alias) that encrypts the stream and, with s3_sse_algorithm = \"aws:kms\", the archive. Default: null, the module creates a key with rotation on."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); IAM policies cannot be scoped to an alias."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the module's KMS key is deleted after destroy (7-30). Default: 30."
  type        = number
  default     = 30
}

# ---- DynamoDB lease table -----------------------------------------------------------------

variable "lease_table_name" {
  description = "DynamoDB lease table name (KCL schema, hash key leaseKey). Default: \"<name>-leases\"."
  type        = string
  default     = null
}

variable "lease_table_deletion_protection" {
  description = "Refuse to delete the lease table (its checkpoints are the consumer's position). Default: true."
  type        = bool
  default     = true
}

variable "allow_lease_table_creation" {
  description = "Grant the consumer dynamodb:CreateTable on the lease table, for running kinlog with consumer.create_lease_table = true. The module creates the table, so this is not needed. Default: false."
  type        = bool
  default     = false
}

# ---- S3 archive -------------------------------------------------------------------------

variable "bucket_name" {
  description = "Archive bucket name. Default: \"<name>-archive-<account id>\"."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy the bucket even when it holds objects. Default: false."
  type        = bool
  default     = false
}

variable "archive_prefix" {
  description = "Key prefix of the archive, before the dt=/hour= partitions (kinlog's default prefix is logs/dt=YYYY-MM-DD/hour=HH/). Must end with /. Default: \"logs/\"."
  type        = string
  default     = "logs/"

  validation {
    condition     = can(regex("^([A-Za-z0-9._=-]+/)+$", var.archive_prefix))
    error_message = "archive_prefix must be one or more path segments, each ending with /."
  }
}

variable "s3_sse_algorithm" {
  description = "Default encryption of the archive: \"aws:kms\" (SSE-KMS with the module's key, S3 bucket keys on) or \"AES256\" (SSE-S3). Default: \"aws:kms\"."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.s3_sse_algorithm)
    error_message = "s3_sse_algorithm must be aws:kms or AES256."
  }
}

variable "bucket_versioning" {
  description = "Versioning of the archive bucket: Enabled, Suspended, or Disabled (only for a bucket that never had versioning). kinlog's replays overwrite objects with identical bytes, so versions only add cost unless you want protection against deletes. Default: Disabled."
  type        = string
  default     = "Disabled"

  validation {
    condition     = contains(["Enabled", "Suspended", "Disabled"], var.bucket_versioning)
    error_message = "bucket_versioning must be Enabled, Suspended or Disabled."
  }
}

variable "transition_to_ia_days" {
  description = "Move archive objects to STANDARD_IA this many days after creation; 0 disables the transition. S3 requires at least 30. Default: 30."
  type        = number
  default     = 30

  validation {
    condition     = var.transition_to_ia_days == 0 || var.transition_to_ia_days >= 30
    error_message = "transition_to_ia_days must be 0 (off) or at least 30."
  }
}

variable "transition_to_glacier_days" {
  description = "Move archive objects to glacier_storage_class this many days after creation; 0 disables the transition. Must be later than transition_to_ia_days when both are set. Default: 90."
  type        = number
  default     = 90

  validation {
    condition     = var.transition_to_glacier_days >= 0
    error_message = "transition_to_glacier_days must be 0 (off) or a positive number of days."
  }
}

variable "glacier_storage_class" {
  description = "Storage class of the second transition: GLACIER_IR (millisecond reads; Athena can still query it), GLACIER (Flexible Retrieval) or DEEP_ARCHIVE. Default: GLACIER."
  type        = string
  default     = "GLACIER"

  validation {
    condition     = contains(["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], var.glacier_storage_class)
    error_message = "glacier_storage_class must be GLACIER_IR, GLACIER or DEEP_ARCHIVE."
  }
}

variable "expiration_days" {
  description = "Delete archive objects this many days after creation; 0 keeps them forever. Default: 0."
  type        = number
  default     = 0
}

variable "noncurrent_version_expiration_days" {
  description = "With versioning, delete overwritten versions this many days after they became noncurrent; 0 keeps them. Default: 30."
  type        = number
  default     = 30
}

# ---- Glue / Athena ----------------------------------------------------------------------

variable "glue_database_name" {
  description = "Glue catalog database for Athena. Default: <name> with hyphens replaced by underscores."
  type        = string
  default     = null
}

variable "glue_table_name" {
  description = "Glue table over the NDJSON archive. Default: \"logs\"."
  type        = string
  default     = "logs"
}

variable "glue_columns" {
  description = "Columns of the archive table: top-level JSON fields of the log records (the OpenX SerDe leaves missing fields NULL and ignores extra ones). Default: time, level, service, msg, message, status, latency_ms, and raw (the text of records that were not a JSON object)."
  type = list(object({
    name    = string
    type    = string
    comment = optional(string)
  }))
  default = [
    { name = "time", type = "string", comment = "record time, RFC 3339" },
    { name = "level", type = "string" },
    { name = "service", type = "string" },
    { name = "msg", type = "string", comment = "log/slog message" },
    { name = "message", type = "string", comment = "message field of other loggers" },
    { name = "status", type = "int" },
    { name = "latency_ms", type = "double" },
    { name = "raw", type = "string", comment = "text of a record that was not a JSON object" },
  ]
}

variable "partition_projection_start" {
  description = "First day (yyyy-MM-dd) of the dt partition projection; queries see days from here to NOW. Default: 2024-01-01."
  type        = string
  default     = "2024-01-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.partition_projection_start))
    error_message = "partition_projection_start must be a date in yyyy-MM-dd form."
  }
}

# ---- Who may assume the roles ---------------------------------------------------------------

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider, for IAM Roles for Service Accounts. Default: null (no IRSA trust)."
  type        = string
  default     = null
}

variable "consumer_service_account" {
  description = "Kubernetes service account (namespace and name) that may assume the consumer role through IRSA. Matches infra/k8s. Default: kinlog/kinlog."
  type = object({
    namespace = string
    name      = string
  })
  default = {
    namespace = "kinlog"
    name      = "kinlog"
  }
}

variable "producer_service_accounts" {
  description = "Kubernetes service accounts of the applications that embed the producer and may assume the producer role through IRSA. Default: none."
  type = list(object({
    namespace = string
    name      = string
  }))
  default = []
}

variable "consumer_trusted_principal_arns" {
  description = "IAM principals (roles, accounts) allowed to assume the consumer role with sts:AssumeRole. Default: none."
  type        = list(string)
  default     = []
}

variable "producer_trusted_principal_arns" {
  description = "IAM principals (roles, accounts) allowed to assume the producer role with sts:AssumeRole. Default: none."
  type        = list(string)
  default     = []
}

variable "producer_trusted_services" {
  description = "AWS service principals allowed to assume the producer role, e.g. ecs-tasks.amazonaws.com or lambda.amazonaws.com. Default: none."
  type        = list(string)
  default     = []
}

variable "reader_trusted_principal_arns" {
  description = "IAM principals (roles, accounts) allowed to assume the reader role, which runs `kinlog query` on the archive. Default: none."
  type        = list(string)
  default     = []
}

# ---- Serverless mode (lambda.tf) ----------------------------------------------------------

variable "lambda_zip" {
  description = "Path of the Lambda function's zip, built by `make lambda` (dist/kinlog-lambda-arm64.zip or dist/kinlog-lambda-amd64.zip). Set, the module also creates the serverless mode of lambda.tf: the function, its event source mapping on the stream, its progress table, role, log group and failed-batch bucket. Default: null, no serverless mode."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_zip == null || var.lambda_zip == "" || can(regex("\\.zip$", var.lambda_zip))
    error_message = "lambda_zip must be the path of a .zip file (make lambda builds dist/kinlog-lambda-<arch>.zip)."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the function: arm64 (Graviton, with dist/kinlog-lambda-arm64.zip) or x86_64 (with dist/kinlog-lambda-amd64.zip). Default: arm64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of the function in MB (128-10240); Lambda allots CPU in proportion. A batch is up to 6 MB of event, buffered and compressed in memory. Default: 1024."
  type        = number
  default     = 1024

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "lambda_memory_mb must be a whole number of MB from 128 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Longest run of one invocation in seconds (1-900): one batch, archived and committed. Default: 120."
  type        = number
  default     = 120

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 900 && floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds
    error_message = "lambda_timeout_seconds must be a whole number from 1 to 900."
  }
}

variable "lambda_batch_size" {
  description = "Most records per invocation (1-10000, the event source mapping's BatchSize); Lambda also stops at the 6 MB invocation payload. Default: 1000."
  type        = number
  default     = 1000

  validation {
    condition     = var.lambda_batch_size >= 1 && var.lambda_batch_size <= 10000 && floor(var.lambda_batch_size) == var.lambda_batch_size
    error_message = "lambda_batch_size must be a whole number from 1 to 10000."
  }
}

variable "lambda_maximum_batching_window_in_seconds" {
  description = "How long the event source mapping gathers records before it invokes the function (0-300 s, MaximumBatchingWindowInSeconds); longer windows mean fewer, larger archive objects. Default: 30."
  type        = number
  default     = 30

  validation {
    condition     = var.lambda_maximum_batching_window_in_seconds >= 0 && var.lambda_maximum_batching_window_in_seconds <= 300 && floor(var.lambda_maximum_batching_window_in_seconds) == var.lambda_maximum_batching_window_in_seconds
    error_message = "lambda_maximum_batching_window_in_seconds must be a whole number from 0 to 300."
  }
}

variable "lambda_maximum_retry_attempts" {
  description = "Retries of a batch the function failed before Lambda discards it to the failed-batch bucket (-1 for no limit, up to 10000; MaximumRetryAttempts). Bisected halves do not count. Default: 10."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_maximum_retry_attempts >= -1 && var.lambda_maximum_retry_attempts <= 10000 && floor(var.lambda_maximum_retry_attempts) == var.lambda_maximum_retry_attempts
    error_message = "lambda_maximum_retry_attempts must be a whole number from -1 (no limit) to 10000."
  }
}

variable "lambda_maximum_record_age_in_seconds" {
  description = "Records older than this are discarded to the failed-batch bucket instead of sent to the function (-1 for no limit, or 60-604800 s; MaximumRecordAgeInSeconds). Default: 86400 (one day, the stream's default retention)."
  type        = number
  default     = 86400

  validation {
    condition     = var.lambda_maximum_record_age_in_seconds == -1 || (var.lambda_maximum_record_age_in_seconds >= 60 && var.lambda_maximum_record_age_in_seconds <= 604800 && floor(var.lambda_maximum_record_age_in_seconds) == var.lambda_maximum_record_age_in_seconds)
    error_message = "lambda_maximum_record_age_in_seconds must be -1 (no limit) or a whole number from 60 to 604800."
  }
}

variable "lambda_bisect_batch_on_function_error" {
  description = "Split a batch the function failed in two and retry the halves (BisectBatchOnFunctionError), so one bad record holds back fewer good ones. Default: true."
  type        = bool
  default     = true
}

variable "lambda_log_level" {
  description = "Level of the function's log (KINLOG_LOG_LEVEL): debug, info, warn or error. Default: info."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.lambda_log_level)
    error_message = "lambda_log_level must be debug, info, warn or error."
  }
}

variable "lambda_log_retention_days" {
  description = "Days CloudWatch Logs keeps the function's log (one of CloudWatch's retention values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653). Default: 30."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.lambda_log_retention_days)
    error_message = "lambda_log_retention_days must be one of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "lambda_failures_expiration_days" {
  description = "Delete failed batches from the failed-batch bucket this many days after Lambda wrote them; 0 keeps them until deleted. Replay them (`kinlog replay`) before: the stream no longer holds their records. Default: 90."
  type        = number
  default     = 90

  validation {
    condition     = var.lambda_failures_expiration_days >= 0 && floor(var.lambda_failures_expiration_days) == var.lambda_failures_expiration_days
    error_message = "lambda_failures_expiration_days must be 0 (keep) or a whole number of days."
  }
}

variable "lambda_progress_table_deletion_protection" {
  description = "Refuse to delete the function's progress table (its items are the function's exactly-once state). Default: true."
  type        = bool
  default     = true
}
