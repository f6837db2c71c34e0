#!/usr/bin/env node
// duckdb-query.js: run SQL with DuckDB (an independent reader of kinlog's archive files) and
// print the result rows as JSON lines.
//
//   node infra/local/duckdb-query.js 'SELECT count(*) AS n FROM read_parquet(...)'
//   echo 'SELECT ...' | node infra/local/duckdb-query.js        (SQL on stdin; or pass "-")
//
// `infra/local/stack up` installs @duckdb/node-api (pinned) into the stack's npm directory
// (<KINLOG_CACHE_DIR, default ~/.cache/kinlog>/npm), where this script finds it when Node's own
// resolution (NODE_PATH) does not; `infra/local/stack env` exports KINLOG_DUCKDB=<this script>.
//
// The SQL may hold several statements (e.g. SET ...; SELECT ...); the rows of the last one
// are printed, one JSON object per line, keyed by column name (column names must be unique:
// alias them). The database is in memory; extensions are never downloaded (json and parquet
// are built in).
//
// Values:
//   NULL                                    null
//   BOOLEAN, integers up to 32 bits, FLOAT  JSON booleans and numbers
//   and DOUBLE                              (NaN and ±Infinity as the strings "NaN", "Infinity")
//   BIGINT, UBIGINT, HUGEINT, UHUGEINT      JSON numbers with every digit (never rounded to a
//                                           double: decode them as arbitrary-precision numbers,
//                                           e.g. Go's json.Decoder.UseNumber)
//   TIMESTAMP WITH TIME ZONE and the        RFC 3339 strings in UTC with six fractional digits,
//   TIMESTAMP_S/_MS of Parquet UTC columns  "2026-03-14T09:58:00.123000Z" (nine for TIMESTAMP_NS)
//   TIMESTAMP (no time zone)                the same without the "Z"
//   infinite timestamps                     the strings "infinity", "-infinity"
//   LIST, ARRAY / STRUCT                    JSON arrays / objects, converted recursively
//   anything else (DATE, DECIMAL, BLOB, ...) DuckDB's text form, as a JSON string
//
// Exit status: 0 on success; 1 with DuckDB's error message on stderr when the query fails;
// 2 for a usage error.
'use strict';

const path = require('path');
const os = require('os');

// The stack's npm directory, by the rule infra/local/stack uses for its cache.
const npmDir = path.join(process.env.KINLOG_CACHE_DIR ||
	path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'kinlog'), 'npm');

// loadDuckDB loads @duckdb/node-api as Node resolves it (NODE_PATH, node_modules above this
// script), or else from the stack's npm directory.
function loadDuckDB() {
	try {
		return require('@duckdb/node-api');
	} catch (e) {
		if (e.code !== 'MODULE_NOT_FOUND') throw e;
	}
	try {
		return require(require.resolve('@duckdb/node-api', { paths: [npmDir] }));
	} catch (e) {
		process.stderr.write(`duckdb-query: cannot load @duckdb/node-api from NODE_PATH or ${npmDir}: ${e.message}\n` +
			'`infra/local/stack up` installs it.\n');
		process.exit(2);
	}
}

const duckdb = loadDuckDB();
const { DuckDBInstance, DuckDBTypeId, JsonDuckDBValueConverter } = duckdb;

// Int marks an integer to print unquoted with all its digits.
class Int {
	constructor(digits) { this.digits = digits; }
}

const intTypes = new Set([DuckDBTypeId.BIGINT, DuckDBTypeId.UBIGINT, DuckDBTypeId.HUGEINT, DuckDBTypeId.UHUGEINT]);

// rfc3339 formats a count of units (a bigint) since the Unix epoch, with digits fractional
// digits, or returns null when the instant is outside what a JS Date can hold.
function rfc3339(count, perSecond, digits, zone) {
	let secs = count / perSecond;
	let frac = count % perSecond;
	if (frac < 0n) {
		frac += perSecond;
		secs -= 1n;
	}
	const ms = secs * 1000n;
	if (ms > 8640000000000000n || ms < -8640000000000000n) return null;
	const iso = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
	if (!/^\d{4}-/.test(iso)) return null; // years beyond 9999 or before 0
	const scale = 10n ** BigInt(digits) / perSecond;
	return iso.slice(0, 19) + '.' + (frac * scale).toString().padStart(digits, '0') + zone;
}

function timestamp(value, type) {
	switch (type.typeId) {
	case DuckDBTypeId.TIMESTAMP_TZ:
		return rfc3339(value.micros, 1000000n, 6, 'Z');
	case DuckDBTypeId.TIMESTAMP:
		return rfc3339(value.micros, 1000000n, 6, '');
	case DuckDBTypeId.TIMESTAMP_MS:
		return rfc3339(value.millis * 1000n, 1000000n, 6, '');
	case DuckDBTypeId.TIMESTAMP_S:
		return rfc3339(value.seconds * 1000000n, 1000000n, 6, '');
	case DuckDBTypeId.TIMESTAMP_NS:
		return rfc3339(value.nanos, 1000000000n, 9, '');
	}
	return undefined;
}

const timestampTypes = new Set([DuckDBTypeId.TIMESTAMP_TZ, DuckDBTypeId.TIMESTAMP, DuckDBTypeId.TIMESTAMP_MS,
	DuckDBTypeId.TIMESTAMP_S, DuckDBTypeId.TIMESTAMP_NS]);

function convert(value, type, converter) {
	if (value == null) return null;
	if (intTypes.has(type.typeId)) return new Int(value.toString());
	if (timestampTypes.has(type.typeId)) {
		const s = timestamp(value, type);
		if (s != null) return s;
		return value.toString(); // infinity, -infinity, or out of a JS Date's range
	}
	// Everything else as the Json converter does it, with this converter for nested values.
	return JsonDuckDBValueConverter(value, type, converter);
}

// stringify writes JSON like JSON.stringify, with Int values unquoted.
function stringify(v) {
	if (v instanceof Int) return v.digits;
	if (v === null || typeof v !== 'object') return JSON.stringify(v);
	if (Array.isArray(v)) return '[' + v.map(stringify).join(',') + ']';
	return '{' + Object.keys(v).map((k) => JSON.stringify(k) + ':' + stringify(v[k])).join(',') + '}';
}

function readStdin() {
	return new Promise((resolve, reject) => {
		const parts = [];
		process.stdin.on('data', (d) => parts.push(d));
		process.stdin.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
		process.stdin.on('error', reject);
	});
}

// write writes s to stdout, waiting for the pipe to drain when it is full.
function write(s) {
	return new Promise((resolve, reject) => {
		if (process.stdout.write(s, (err) => { if (err) reject(err); })) resolve();
		else process.stdout.once('drain', resolve);
	});
}

async function main() {
	const args = process.argv.slice(2);
	if (args.length > 1 || args[0] === '-h' || args[0] === '--help') {
		process.stderr.write('usage: duckdb-query.js [SQL | -]   (SQL on stdin when absent or "-")\n');
		process.exit(2);
	}
	const sql = args.length === 0 || args[0] === '-' ? await readStdin() : args[0];
	if (sql.trim() === '') {
		process.stderr.write('duckdb-query: no SQL given\n');
		process.exit(2);
	}
	const db = await DuckDBInstance.create(':memory:', { autoinstall_known_extensions: 'false' });
	const conn = await db.connect();
	const result = await conn.stream(sql);
	const names = result.columnNames();
	const dup = names.find((n, i) => names.indexOf(n) !== i);
	if (dup !== undefined) {
		throw new Error(`column name ${JSON.stringify(dup)} appears more than once in the result; alias the columns`);
	}
	for await (const rows of result.yieldConvertedRowObjects(convert)) {
		if (rows.length > 0) await write(rows.map(stringify).join('\n') + '\n');
	}
	conn.closeSync();
	db.closeSync();
}

main().catch((e) => {
	process.stderr.write(`duckdb-query: ${e && e.message ? e.message : e}\n`);
	process.exitCode = 1;
});
