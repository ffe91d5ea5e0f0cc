// The reference side of tests/faceres_parity.rs: runs a TF.js FaceRes graph (model.json + shards)
// with TensorFlow.js's pure-JavaScript CPU backend on raw face crops, preprocessed as the model's
// authors do (RGB -> BGR, minus the caffe means 103.939, 116.779, 123.68), and writes one JSON
// line per image: the pooled features, the `feats` layer, P(male) and the age distribution.
//
// Usage: node faceres_reference.mjs MODEL_JSON CROPS_U8 COUNT OUT_JSONL
// CROPS_U8 holds COUNT images of 224 x 224 x 3 bytes (RGB, row-major), back to back.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import fs from 'node:fs';
import path from 'node:path';

const [modelJson, cropsPath, countText, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node faceres_reference.mjs MODEL_JSON CROPS_U8 COUNT OUT_JSONL');
  process.exit(2);
}
const SIDE = 224;
const count = Number(countText);
const crops = fs.readFileSync(cropsPath);
if (!Number.isInteger(count) || count < 1 || crops.length !== count * SIDE * SIDE * 3) {
  console.error(`${cropsPath}: ${crops.length} bytes, expected ${count} x ${SIDE} x ${SIDE} x 3`);
  process.exit(2);
}

await tf.setBackend('cpu');
if (tf.getBackend() !== 'cpu') throw new Error(`backend ${tf.getBackend()}, expected cpu`);

// The model's files, read from its folder: tf.io's own file handlers need tfjs-node.
const artifacts = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
const folder = path.dirname(modelJson);
const shards = artifacts.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFileSync(path.join(folder, p)));
const weights = Buffer.concat(shards);
const model = await loadGraphModel(tf.io.fromMemory({
  modelTopology: artifacts.modelTopology,
  weightSpecs: artifacts.weightsManifest.flatMap((g) => g.weights),
  weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
  format: artifacts.format,
}));

const OUTPUTS = ['global_pooling/Mean', 'feats/Relu', 'gender_pred/Sigmoid', 'age_pred/Softmax'];
const lines = [];
for (let i = 0; i < count; i += 1) {
  const bytes = crops.subarray(i * SIDE * SIDE * 3, (i + 1) * SIDE * SIDE * 3);
  const rgb = tf.tensor4d(Float32Array.from(bytes), [1, SIDE, SIDE, 3]);
  const input = tf.sub(tf.reverse(rgb, 3), tf.tensor1d([103.939, 116.779, 123.68]));
  const [features, embedding, male, age] = model.execute(input, OUTPUTS);
  lines.push(JSON.stringify({
    features: Array.from(await features.data()),
    embedding: Array.from(await embedding.data()),
    male: (await male.data())[0],
    age: Array.from(await age.data()),
  }));
  tf.dispose([rgb, input, features, embedding, male, age]);
}
fs.writeFileSync(outPath, `${lines.join('\n')}\n`);
