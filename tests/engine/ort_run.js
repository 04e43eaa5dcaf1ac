// Runs an ONNX model on ONNX Runtime (npm onnxruntime-node, CPU) with .npy inputs: the numerical
// oracle and the speed reference for Veil's engine tests and bench.
//
//   node ort_run.js run   MODEL OUTDIR THREADS NAME=FILE.npy...   writes OUTDIR/<output>.npy
//   node ort_run.js bench MODEL THREADS WARMUP ITERS NAME=FILE.npy...
//                                          prints {"median_ms":..,"p90_ms":..,"load_ms":..}
//
// ORT_OPT_LEVEL (disabled, basic, extended or all; default all) sets the graph optimisation
// level: tests compare `all` with `disabled` to measure ONNX Runtime's own rounding spread.
// float16 tensors travel as '<f2' .npy files.
//
// Exit status 77 when onnxruntime-node is not installed (tests treat it as a skip).
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require(path.join(__dirname, '..', 'peers', 'node_modules', 'onnxruntime-node'));
} catch (e) {
  console.error('onnxruntime-node is not installed (cd tests/peers && npm install): ' + e.message);
  process.exit(77);
}

const DTYPES = {
  '<f2': ['float16', Uint16Array, 2],
  '<f4': ['float32', Float32Array, 4],
  '<f8': ['float64', Float64Array, 8],
  '<i8': ['int64', BigInt64Array, 8],
  '<i4': ['int32', Int32Array, 4],
  '|u1': ['uint8', Uint8Array, 1],
  '|i1': ['int8', Int8Array, 1],
  '|b1': ['bool', Uint8Array, 1],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(file + ': not a .npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hoff = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hoff, hoff + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim())
    .filter((s) => s.length > 0).map(Number);
  const [type, Ctor, size] = DTYPES[descr] || [];
  if (!type) throw new Error(file + ': unsupported dtype ' + descr);
  const off = hoff + hlen;
  const n = shape.reduce((a, b) => a * b, 1);
  const copy = Buffer.from(buf.subarray(off, off + n * size));
  let data = new Ctor(copy.buffer, copy.byteOffset, n);
  if (type === 'bool') data = Uint8Array.from(data);
  return new ort.Tensor(type, type === 'bool' ? Array.from(data, (v) => v !== 0) : data, shape);
}

function writeNpy(file, t) {
  const map = { float16: '<f2', float32: '<f4', float64: '<f8', int64: '<i8', int32: '<i4', uint8: '|u1', int8: '|i1', bool: '|b1' };
  const descr = map[t.type];
  if (!descr) throw new Error('cannot write dtype ' + t.type);
  const dims = t.dims.length === 1 ? t.dims[0] + ',' : t.dims.join(', ');
  let header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + '), }';
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  let body;
  if (t.type === 'bool') body = Buffer.from(Uint8Array.from(t.data, (v) => (v ? 1 : 0)));
  else body = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

function feedsFrom(args) {
  const feeds = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    feeds[a.slice(0, eq)] = readNpy(a.slice(eq + 1));
  }
  return feeds;
}

async function session(model, threads) {
  return ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: process.env.ORT_OPT_LEVEL || 'all',
  });
}

async function main() {
  const [mode, model, ...rest] = process.argv.slice(2);
  if (mode === 'run') {
    const [outdir, threads, ...inputs] = rest;
    const s = await session(model, Number(threads));
    const res = await s.run(feedsFrom(inputs));
    fs.mkdirSync(outdir, { recursive: true });
    for (const name of s.outputNames) writeNpy(path.join(outdir, name + '.npy'), res[name]);
  } else if (mode === 'bench') {
    const [threads, warmup, iters, ...inputs] = rest;
    const t0 = process.hrtime.bigint();
    const s = await session(model, Number(threads));
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const feeds = feedsFrom(inputs);
    for (let i = 0; i < Number(warmup); i++) await s.run(feeds);
    const times = [];
    for (let i = 0; i < Number(iters); i++) {
      const a = process.hrtime.bigint();
      await s.run(feeds);
      times.push(Number(process.hrtime.bigint() - a) / 1e6);
    }
    times.sort((a, b) => a - b);
    const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
    console.log(JSON.stringify({ load_ms: loadMs, median_ms: q(0.5), p90_ms: q(0.9), min_ms: times[0] }));
  } else {
    console.error('usage: ort_run.js run|bench ...');
    process.exit(2);
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
