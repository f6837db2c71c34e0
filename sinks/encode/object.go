package encode

import "strings"

// An object's name ends in the extension of its encoding, which is all a reader needs to
// decode it:
//
//	.json  .json.gz  .json.zst  .json.snappy   NDJSON lines ([FramingLines])
//	.raw   .raw.gz   .raw.zst   .raw.snappy    records as received ([FramingRaw])
//	.parquet                                   Parquet (the codec is inside the file)
//
// [Encoder.Extension] and [ObjectConfig] both read this table.
var objectKinds = func() []objectKind {
	var out []objectKind
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd, CompressionSnappy} {
		out = append(out,
			objectKind{".json" + compressionExt[c], "application/x-ndjson", Config{Format: NDJSON, Framing: FramingLines, Compression: c}},
			objectKind{".raw" + compressionExt[c], "application/octet-stream", Config{Format: NDJSON, Framing: FramingRaw, Compression: c}})
	}
	return append(out, objectKind{".parquet", "application/vnd.apache.parquet", Config{Format: Parquet}})
}()

type objectKind struct {
	ext, contentType string
	cfg              Config // Format, Framing and, for NDJSON, Compression
}

var compressionExt = [...]string{CompressionGzip: ".gz", CompressionZstd: ".zst", CompressionSnappy: ".snappy", CompressionNone: ""}

// kindOf returns the table entry of an encoding (defaults resolved).
func kindOf(cfg Config) (objectKind, bool) {
	for _, k := range objectKinds {
		if k.cfg.Format == cfg.Format && (cfg.Format == Parquet || (k.cfg.Framing == cfg.Framing && k.cfg.Compression == cfg.Compression)) {
			return k, true
		}
	}
	return objectKind{}, false
}

// ObjectConfig reports the encoding an archive object's name (or key) says it was written
// with: its Format, Framing and Compression (for Parquet, Compression is
// CompressionDefault: each page names its codec). It reports false for a name that ends in
// no extension the encoder writes. Rollup objects (.rollup.json.gz) end like gzip NDJSON:
// callers listing a prefix that also holds rollups exclude them by their own extension.
func ObjectConfig(key string) (Config, bool) {
	for _, k := range objectKinds {
		if strings.HasSuffix(key, k.ext) {
			return k.cfg, true
		}
	}
	return Config{}, false
}
