module github.com/kinlog/kinlog/producer/internal/peer/a8m

go 1.26.0

require (
	github.com/a8m/kinesis-producer v0.2.0
	github.com/aws/aws-sdk-go v1.55.8
	github.com/golang/protobuf v1.5.4
)

require (
	github.com/jmespath/go-jmespath v0.4.0 // indirect
	github.com/jpillora/backoff v1.1.0 // indirect
	google.golang.org/protobuf v1.33.0 // indirect
)
