// Package prefix compiles and evaluates S3 key prefix templates with the expressions
// Amazon Data Firehose users know, so that a kinlog archive can be laid out like a Firehose
// one — but with keys that are a pure function of the records.
//
// # Expressions
//
//	!{timestamp:yyyy/MM/dd/HH}          the record's time, a java.time DateTimeFormatter
//	                                    pattern evaluated in UTC (see [DateTimeFormat])
//	!{partitionKeyFromQuery:service}    a member of the JSON record; dotted paths such as
//	                                    http.status reach nested members
//	!{firehose:error-output-type}       the error class, in error-output prefixes
//
// Partition values are percent-encoded ([EscapeValue]) so that they never add path
// segments. !{firehose:random-string} is refused.
//
// # Defaults
//
// [DefaultArchive] is Hive-style, logs/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/, so
// that Athena and Spark discover dt and hour partitions without a projection template.
package prefix
