// Package dynamodb is the checkpoint store backed by a DynamoDB lease table with the schema of
// the Java KCL (2.x/3.x), so kinlog and KCL tooling read the same table.
package dynamodb
