package encode

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Compression is an object's compression codec.
type Compression uint8

// The codecs. CompressionDefault picks the format's default: gzip for NDJSON, zstd for
// Parquet. For NDJSON the whole object is compressed as one stream; for Parquet the codec
// compresses each page inside the file.
const (
	CompressionDefault Compression = iota
	CompressionGzip
	CompressionZstd
	CompressionSnappy
	CompressionNone
)

var compressionNames = [...]string{"default", "gzip", "zstd", "snappy", "none"}

func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("compression(%d)", c)
}

// ParseCompression reads a codec name: gzip, zstd, snappy, none (or uncompressed), or "" for
// the default.
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(s) {
	case "", "default":
		return CompressionDefault, nil
	case "gzip", "gz":
		return CompressionGzip, nil
	case "zstd", "zst":
		return CompressionZstd, nil
	case "snappy":
		return CompressionSnappy, nil
	case "none", "uncompressed":
		return CompressionNone, nil
	}
	return 0, fmt.Errorf("encode: unknown compression %q (want gzip, zstd, snappy or none)", s)
}

// Fixed codec settings: an object's bytes must be a pure function of its records, so levels
// are constants and no header carries a time or a name.
const (
	// GzipLevel is the gzip level of NDJSON objects (gzip's default, 6).
	GzipLevel = gzip.DefaultCompression
	// ZstdLevel is the zstd level (the library's default, about zstd level 3).
	ZstdLevel = zstd.SpeedDefault
)

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	gzipPool = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, GzipLevel)
		return w
	}}
	s2Pool = sync.Pool{New: func() any {
		return s2.NewWriter(nil, s2.WriterSnappyCompat(), s2.WriterConcurrency(1))
	}}
)

func zstdEncoder() *zstd.Encoder {
	zstdOnce.Do(func() {
		var err error
		zstdEnc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(ZstdLevel),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // fixed, valid options
		}
	})
	return zstdEnc
}

// Compress appends src compressed with c (not CompressionDefault) to dst as one stream: a
// gzip member without name or time, a zstd frame, or a framed Snappy stream
// (application/x-snappy-framed). The output is deterministic.
func Compress(dst, src []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressionNone:
		return append(dst, src...), nil
	case CompressionZstd:
		return zstdEncoder().EncodeAll(src, dst), nil
	case CompressionGzip:
		b := bytes.NewBuffer(dst)
		w := gzipPool.Get().(*gzip.Writer)
		defer gzipPool.Put(w)
		w.Reset(b)
		if _, err := w.Write(src); err != nil {
			return dst, err
		}
		if err := w.Close(); err != nil {
			return dst, err
		}
		return b.Bytes(), nil
	case CompressionSnappy:
		b := bytes.NewBuffer(dst)
		w := s2Pool.Get().(*s2.Writer)
		defer s2Pool.Put(w)
		w.Reset(b)
		if _, err := w.Write(src); err != nil {
			return dst, err
		}
		if err := w.Close(); err != nil {
			return dst, err
		}
		return b.Bytes(), nil
	}
	return dst, fmt.Errorf("encode: cannot compress with %v", c)
}

// NewReader returns a reader of a stream compressed with c.
func NewReader(r io.Reader, c Compression) (io.ReadCloser, error) {
	switch c {
	case CompressionNone:
		return io.NopCloser(r), nil
	case CompressionGzip:
		return gzip.NewReader(r)
	case CompressionZstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case CompressionSnappy:
		return io.NopCloser(s2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("encode: cannot decompress %v", c)
}

// maxDeflateRatio bounds how much a deflate stream can expand (1032:1), so a gzip trailer's
// size is trusted as a buffer hint only when it is plausible.
const maxDeflateRatio = 1032

var (
	gzipReaders = sync.Pool{}
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
)

// Decompress returns the decompressed contents of src. It sizes the output once where the
// format says how big it is (the gzip trailer, the zstd frame header) and reuses decoders.
func Decompress(src []byte, c Compression) ([]byte, error) { return DecompressAppend(nil, src, c) }

// DecompressAppend is [Decompress] appending to dst, so that a caller can reuse buffers.
func DecompressAppend(dst, src []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressionZstd:
		zstdDecOnce.Do(func() {
			var err error
			zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
			if err != nil {
				panic(err) // fixed, valid options
			}
		})
		return zstdDec.DecodeAll(src, dst)
	case CompressionGzip:
		hint := 4 * len(src)
		if n := len(src); n >= 18 {
			isize := int(src[n-4]) | int(src[n-3])<<8 | int(src[n-2])<<16 | int(src[n-1])<<24
			if isize > 0 && isize <= maxDeflateRatio*n {
				hint = isize
			}
		}
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = zr.Reset(bytes.NewReader(src))
		}
		if err != nil {
			return dst, err
		}
		defer gzipReaders.Put(zr)
		buf := bytes.NewBuffer(dst)
		buf.Grow(hint + bytes.MinRead)
		if _, err := buf.ReadFrom(zr); err != nil {
			return dst, err
		}
		return buf.Bytes(), nil
	}
	r, err := NewReader(bytes.NewReader(src), c)
	if err != nil {
		return dst, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(dst)
	if _, err := buf.ReadFrom(r); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}
