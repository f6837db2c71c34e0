#!/usr/bin/env node
// deagg.js: deaggregate KPL aggregates with awslabs' Node deaggregator (the npm package
// aws-kinesis-agg) and print the user records it returns, for internal/kpl/interop_test.go.
//
//   node internal/kpl/interop/deagg.js <aggregates.b64
//
// Input: one aggregate per line, base64. Output: one JSON object per user record, in order,
// in the format of this directory's Go program (main.go):
//
//   {"agg":0,"sub":0,"pk":"…","ehk":"…","data":"<base64>","tags":[["kl.s","7"]]}
//
// agg is the input line (passed to deaggregateSync as the Kinesis record's sequenceNumber),
// sub its subSequenceNumber; pk, ehk (explicitPartitionKey; null when undefined) and data are
// what deaggregateSync returns, with checksums verified. Its user records carry no tags, so
// tags come from decoding the same aggregate with the package's own protobuf schema
// (lib/common.js, the one deaggregate uses).
//
// `infra/local/stack up` installs aws-kinesis-agg (pinned) into the stack's npm directory
// (<KINLOG_CACHE_DIR, default ~/.cache/kinlog>/npm), where this script finds it when Node's
// own resolution (NODE_PATH) does not. Exit status: 0 on success, 1 on an error, 3 when
// aws-kinesis-agg cannot be found (the test then skips, or fails under CI).
'use strict';

const path = require('path');
const os = require('os');
const fs = require('fs');

const npmDir = path.join(process.env.KINLOG_CACHE_DIR ||
	path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'kinlog'), 'npm');

// The package's directory: by Node's resolution, else in the stack's npm directory.
function packageDir(name) {
	for (const opts of [undefined, { paths: [npmDir] }]) {
		try {
			return path.dirname(require.resolve(`${name}/package.json`, opts));
		} catch (e) {
			if (e.code !== 'MODULE_NOT_FOUND') throw e;
		}
	}
	process.stderr.write(`deagg: ${name} not found (by NODE_PATH, nor in ${npmDir}); run infra/local/stack up\n`);
	process.exit(3);
}

const dir = packageDir('aws-kinesis-agg');
const agg = require(dir);
const common = require(path.join(dir, 'lib', 'common'));
const version = require(path.join(dir, 'package.json')).version;

const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l !== '');
const out = [];
lines.forEach((b64, i) => {
	let records;
	agg.deaggregateSync({ data: b64, partitionKey: 'aggregate', sequenceNumber: String(i) }, true, (err, rs) => {
		if (err) throw new Error(`aggregate ${i}: ${err.message || err}`);
		records = rs;
	});
	const buf = Buffer.from(b64, 'base64');
	const msg = common.AggregatedRecord.decode(buf.subarray(4, buf.length - 16));
	if (records.length !== msg.records.length) {
		throw new Error(`aggregate ${i}: deaggregateSync returned ${records.length} records, the schema holds ${msg.records.length}`);
	}
	records.forEach((r, j) => {
		if (r.sequenceNumber !== String(i) || r.subSequenceNumber !== j) {
			throw new Error(`aggregate ${i} record ${j}: sequence ${r.sequenceNumber}/${r.subSequenceNumber}`);
		}
		out.push(JSON.stringify({
			agg: i,
			sub: j,
			pk: r.partitionKey,
			ehk: r.explicitPartitionKey === undefined ? null : r.explicitPartitionKey,
			data: r.data,
			tags: (msg.records[j].tags || []).map((t) => [t.key, t.value]),
		}));
	});
});
process.stderr.write(`deagg: aws-kinesis-agg ${version}\n`);
process.stdout.write(out.length ? out.join('\n') + '\n' : '');
