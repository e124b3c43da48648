// An example training script for the onnx stack (README, "Training jobs"): fits a logistic
// regression to a CSV of numeric feature columns and a 0/1 label in the last column, and writes
// it as ONNX to /output, where mlfleet pushes it as the job's output model. Plain user code:
// mlfleet runs it, it does not know what it fits.
//
//   node train.mjs [--data /data/exams] [--epochs 3000] [--rate 0.5] [--probe "1,2;3,4"]
//
// The model takes the raw features, x: FP32 [batch, features], and answers
// probability: FP32 [batch, 1]. The script prints one JSON line with the training accuracy and
// its own predictions for the --probe rows, so they can be compared with the served model's.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodeModel } from '/opt/mlfleet/onnx.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: process.env.MLFLEET_DATASET_EXAMS ?? '/data/exams' },
    epochs: { type: 'string', default: '3000' },
    rate: { type: 'string', default: '0.5' },
    probe: { type: 'string', default: '2,5;4.5,6;7,8' },
  },
});

const [header, ...lines] = readFileSync(values.data, 'utf8').trim().split('\n');
const columns = header.split(',');
const rows = lines.map((line) => line.split(',').map(Number));
const features = columns.length - 1;
const X = rows.map((r) => r.slice(0, features));
const y = rows.map((r) => r[features]);

// Standardize for the descent, then fold the scaling back into the weights: the model takes raw features.
const mean = Array.from({ length: features }, (_, j) => X.reduce((s, r) => s + r[j], 0) / X.length);
const std = Array.from({ length: features }, (_, j) => Math.sqrt(X.reduce((s, r) => s + (r[j] - mean[j]) ** 2, 0) / X.length) || 1);
const Z = X.map((r) => r.map((v, j) => (v - mean[j]) / std[j]));
const sigmoid = (t) => 1 / (1 + Math.exp(-t));
let w = new Array(features).fill(0);
let b = 0;
const rate = Number(values.rate);
for (let epoch = 0; epoch < Number(values.epochs); epoch++) {
  const gw = new Array(features).fill(0);
  let gb = 0;
  for (let i = 0; i < Z.length; i++) {
    const error = sigmoid(Z[i].reduce((s, v, j) => s + v * w[j], b)) - y[i];
    for (let j = 0; j < features; j++) gw[j] += error * Z[i][j];
    gb += error;
  }
  w = w.map((v, j) => v - (rate * gw[j]) / Z.length);
  b -= (rate * gb) / Z.length;
}
const weights = w.map((v, j) => v / std[j]);
const bias = b - w.reduce((s, v, j) => s + (v * mean[j]) / std[j], 0);
const predict = (row) => sigmoid(row.reduce((s, v, j) => s + v * weights[j], bias));
const accuracy = X.filter((row, i) => (predict(row) >= 0.5 ? 1 : 0) === y[i]).length / X.length;

const model = encodeModel({
  name: 'logistic-regression',
  doc: `logistic regression on ${columns.slice(0, features).join(', ')} → P(${columns[features]})`,
  inputs: [{ name: 'x', type: 'FLOAT', shape: ['batch', features] }],
  outputs: [{ name: 'probability', type: 'FLOAT', shape: ['batch', 1] }],
  initializers: [
    { name: 'W', type: 'FLOAT', dims: [features, 1], data: weights },
    { name: 'B', type: 'FLOAT', dims: [1], data: [bias] },
  ],
  nodes: [
    { op: 'MatMul', inputs: ['x', 'W'], outputs: ['logit_raw'] },
    { op: 'Add', inputs: ['logit_raw', 'B'], outputs: ['logit'] },
    { op: 'Sigmoid', inputs: ['logit'], outputs: ['probability'] },
  ],
});
const output = process.env.MLFLEET_OUTPUT_PATH ?? '/output';
writeFileSync(path.join(output, 'model.onnx'), model);

const probe = values.probe.split(';').map((row) => row.split(',').map(Number));
console.log(JSON.stringify({ rows: X.length, accuracy, weights, bias, probe, predictions: probe.map(predict) }));
