// Command testfn is the tiny Lambda function that the tests of package esm run in the AWS
// Lambda Runtime Interface Emulator. Build it with
//
//	CGO_ENABLED=0 go build -tags lambda.norpc -o <dir>/bootstrap ./internal/esm/internal/testfn
//
// Every invocation appends one line to the file named by TESTFN_LOG: the event exactly as
// received (compact JSON). The function then behaves as the records' data tell it, with
// markers anywhere in a record's data (N is a count; "always" never stops):
//
//	fail-item=N   report this record in batchItemFailures the first N times it is received
//	bad-id=N      report an empty itemIdentifier the first N times (a whole-batch failure)
//	error=N       return an error the first N times a batch holds this record
//	sleep=N       sleep past the function timeout the first N times (the RIE kills it)
//	exit=N        exit the runtime (status 3) the first N times
//
// The counts are kept in files under TESTFN_STATE, one per record and marker, so they
// survive the runtime being killed and re-initialised. Without a marker the function
// returns an empty batchItemFailures list: success.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

var marker = regexp.MustCompile(`(fail-item|bad-id|error|sleep|exit)=(always|[0-9]+)`)

type event struct {
	Records []struct {
		EventID string `json:"eventID"`
		Kinesis struct {
			SequenceNumber string `json:"sequenceNumber"`
			Data           []byte `json:"data"`
		} `json:"kinesis"`
	} `json:"Records"`
}

func main() {
	lambda.Start(handle)
}

func handle(ctx context.Context, raw json.RawMessage) (events.KinesisEventResponse, error) {
	resp := events.KinesisEventResponse{BatchItemFailures: []events.KinesisBatchItemFailure{}}
	if err := appendLog(raw); err != nil {
		return resp, err
	}
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return resp, fmt.Errorf("decoding event: %w", err)
	}
	var fail error
	for _, r := range ev.Records {
		for _, m := range marker.FindAllSubmatch(r.Kinesis.Data, -1) {
			kind, times := string(m[1]), string(m[2])
			hit, err := take(r.EventID, kind, times)
			if err != nil {
				return resp, err
			}
			if !hit {
				continue
			}
			switch kind {
			case "fail-item":
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.KinesisBatchItemFailure{ItemIdentifier: r.Kinesis.SequenceNumber})
			case "bad-id":
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.KinesisBatchItemFailure{ItemIdentifier: ""})
			case "error":
				fail = errors.Join(fail, fmt.Errorf("record %s asked for an error", r.Kinesis.SequenceNumber))
			case "sleep":
				deadline, _ := ctx.Deadline()
				// Sleep past the deadline: the RIE kills the runtime, so this never returns.
				time.Sleep(time.Until(deadline) + time.Minute)
			case "exit":
				os.Exit(3)
			}
		}
	}
	return resp, fail
}

// take counts one more delivery of (record, marker) and reports whether the marker still
// applies: the first N deliveries, or always.
func take(eventID, kind, times string) (bool, error) {
	dir := os.Getenv("TESTFN_STATE")
	if dir == "" {
		return false, errors.New("TESTFN_STATE is not set")
	}
	name := filepath.Join(dir, strings.NewReplacer(":", "_", "/", "_").Replace(eventID)+"."+kind)
	n := 0
	if b, err := os.ReadFile(name); err == nil {
		n, _ = strconv.Atoi(string(b))
	}
	if err := os.WriteFile(name, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
		return false, err
	}
	if times == "always" {
		return true, nil
	}
	limit, _ := strconv.Atoi(times)
	return n < limit, nil
}

func appendLog(raw json.RawMessage) error {
	name := os.Getenv("TESTFN_LOG")
	if name == "" {
		return errors.New("TESTFN_LOG is not set")
	}
	var line bytes.Buffer
	if err := json.Compact(&line, raw); err != nil {
		return err
	}
	line.WriteByte('\n')
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(line.Bytes()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
