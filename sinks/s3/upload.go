package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kinlog/kinlog/internal/backoff"
)

// PutError is the error of one failed attempt to write an object.
type PutError struct {
	Key string
	// Code is the S3 error code when the service answered (AccessDenied, NoSuchBucket, ...).
	Code string
	Err  error
}

func (e *PutError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("writing s3 object %s: %s: %v", e.Key, e.Code, e.Err)
	}
	return fmt.Sprintf("writing s3 object %s: %v", e.Key, e.Err)
}

func (e *PutError) Unwrap() error { return e.Err }

// put writes one object, retrying with jittered exponential backoff until S3 confirms it or
// ctx ends. A bucket that refuses every write therefore stalls acknowledgements (the
// consumer's lag grows, nothing is lost); every failed attempt is counted and logged.
func (s *Sink) put(ctx context.Context, log *slog.Logger, o *object) error {
	bo := backoff.Backoff{Min: s.cfg.retryMin, Max: s.cfg.retryMax}
	for attempt := 1; ; attempt++ {
		err := s.putOnce(ctx, o)
		if err == nil || ctx.Err() == nil {
			s.putResult(err)
		}
		if err == nil {
			s.met.objects.WithLabelValues(o.kind).Inc()
			s.met.bytes.WithLabelValues(o.kind).Add(float64(len(o.body)))
			if attempt > 1 {
				log.Info("s3 write succeeded after retries", "key", o.key, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		s.met.errors.WithLabelValues(errTypePut).Inc()
		pe := &PutError{Key: o.key, Err: err}
		var ae smithy.APIError
		if errors.As(err, &ae) {
			pe.Code = ae.ErrorCode()
		}
		wait := bo.Next()
		log.Warn("s3 write failed; records stay unacknowledged until it succeeds", "key", o.key, "attempt", attempt, "retry_in", wait.String(), "err", pe)
		if err := sleep(ctx, s.cfg.clock, wait); err != nil {
			return err
		}
	}
}

// attemptTimeout is the deadline of one attempt to write an object of n bytes; 0 for none.
func (c *config) attemptTimeout(n int) time.Duration {
	if c.reqTimeout == 0 {
		return 0
	}
	return c.reqTimeout + time.Duration(int64(n)*int64(time.Second)/UploadRateFloor)
}

// putOnce makes one attempt to write o, within the attempt timeout: a request left
// unanswered is cancelled, which closes its connection, so the next attempt dials a new one.
func (s *Sink) putOnce(ctx context.Context, o *object) error {
	if d := s.cfg.attemptTimeout(len(o.body)); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(o.key),
		Body:          bytes.NewReader(o.body),
		ContentLength: aws.Int64(int64(len(o.body))),
		ContentType:   aws.String(o.contentType),
		Metadata:      o.metadata(),
	}
	switch s.cfg.sse {
	case SSES3:
		in.ServerSideEncryption = types.ServerSideEncryptionAes256
	case SSEKMS:
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		if s.cfg.kmsKeyID != "" {
			in.SSEKMSKeyId = aws.String(s.cfg.kmsKeyID)
		}
	}
	if s.cfg.storageClass != "" {
		in.StorageClass = s.cfg.storageClass
	}
	if len(o.body) >= s.cfg.multipartAt {
		// The manager computes a checksum per part; S3 checks each and the whole.
		in.ChecksumAlgorithm = types.ChecksumAlgorithm(s.cfg.checksum)
		in.ContentLength = nil
		up := manager.NewUploader(s.client, func(u *manager.Uploader) {
			u.PartSize = int64(s.cfg.partSize)
			u.Concurrency = 1 // objects of a flush already upload in parallel
		})
		_, err := up.Upload(ctx, in)
		return err
	}
	// A precomputed checksum: S3 refuses the body unless it matches.
	switch s.cfg.checksum {
	case ChecksumCRC32C:
		in.ChecksumCRC32C = aws.String(crc(o.body, crc32.MakeTable(crc32.Castagnoli)))
	case ChecksumCRC32:
		in.ChecksumCRC32 = aws.String(crc(o.body, crc32.IEEETable))
	case ChecksumSHA256:
		sum := sha256.Sum256(o.body)
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
	}
	_, err := s.client.PutObject(ctx, in)
	return err
}

func crc(b []byte, t *crc32.Table) string {
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], crc32.Checksum(b, t))
	return base64.StdEncoding.EncodeToString(out[:])
}

// sleep waits d on clk, or until ctx ends (returning its cause).
func sleep(ctx context.Context, clk Clock, d time.Duration) error {
	select {
	case <-clk.After(d):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
