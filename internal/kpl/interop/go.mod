module github.com/kinlog/kinlog/internal/kpl/interop

go 1.26.0

require (
	github.com/aws/aws-sdk-go-v2/service/kinesis v1.6.0
	github.com/awslabs/kinesis-aggregation/go/v2 v2.0.0-20241004223953-c2774b1ab29b
	github.com/golang/protobuf v1.5.2
)

require (
	github.com/aws/smithy-go v1.8.0 // indirect
	google.golang.org/protobuf v1.26.0 // indirect
)
