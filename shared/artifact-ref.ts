// Names and references of models and datasets, checked the same way by the CLI and the
// coordinator. A REF is `name` (the latest version), `name:3` or `name@alias`.
import fs from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError } from './errors.js';
import { quoted } from './truncate.js';

/** Models and datasets share one registry, one protocol and one CLI, told apart by kind. */
export type ArtifactKind = 'model' | 'dataset';

/** The formats a push may declare, per kind. */
export const ARTIFACT_FORMATS: Readonly<Record<ArtifactKind, readonly string[]>> = {
  model: ['onnx', 'tensorflow-savedmodel', 'torchscript', 'safetensors', 'other'],
  dataset: ['csv', 'parquet', 'jsonl', 'tfrecord', 'arrow', 'images', 'other'],
};

/** Extensions that name a format; checked against the kind's formats, so a .csv model is "other". */
export const FORMAT_BY_EXTENSION: Readonly<Record<string, string>> = {
  '.onnx': 'onnx',
  '.pt': 'torchscript',
  '.torchscript': 'torchscript',
  '.safetensors': 'safetensors',
  '.csv': 'csv',
  '.parquet': 'parquet',
  '.jsonl': 'jsonl',
  '.tfrecord': 'tfrecord',
  '.arrow': 'arrow',
};

/**
 * The format a pushed path suggests: a directory holding saved_model.pb is a TensorFlow
 * SavedModel, a file goes by its extension; 'other' when that names none of the kind's formats.
 */
export function inferArtifactFormat(kind: ArtifactKind, fileName: string, directory: { savedModel: boolean } | undefined): string {
  let format = 'other';
  if (directory) {
    if (directory.savedModel) format = 'tensorflow-savedmodel';
  } else {
    const dot = fileName.lastIndexOf('.');
    const slash = Math.max(fileName.lastIndexOf('/'), fileName.lastIndexOf('\\'));
    format = (dot > slash + 1 ? FORMAT_BY_EXTENSION[fileName.slice(dot).toLowerCase()] : undefined) ?? 'other';
  }
  return ARTIFACT_FORMATS[kind].includes(format) ? format : 'other';
}

/** inferArtifactFormat for a path on disk: a directory is looked into for a saved_model.pb file. */
export async function inferPathFormat(kind: ArtifactKind, file: string, directory: boolean): Promise<string> {
  if (!directory) return inferArtifactFormat(kind, file, undefined);
  const savedModel = await fs.stat(path.join(file, 'saved_model.pb')).catch(() => undefined);
  return inferArtifactFormat(kind, file, { savedModel: savedModel?.isFile() ?? false });
}

export interface ArtifactRef {
  name: string;
  version?: number;
  alias?: string;
}

/** Lowercase letters, digits, '.', '_' and '-'; starts and ends with a letter or digit; no "..". */
export const ARTIFACT_NAME = /^(?!.*\.\.)[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?$/;
export const NAME_RULE = 'lowercase letters, digits, ".", "_" and "-" (1-100, starting and ending with a letter or digit, no "..")';

export function checkName(name: string, what = 'name'): string {
  if (!ARTIFACT_NAME.test(name)) throw new InvalidArgumentError(`${what} ${quoted(name)} is not valid: use ${NAME_RULE}`);
  return name;
}

export function parseRef(ref: string): ArtifactRef {
  const text = ref.trim();
  const at = text.indexOf('@');
  if (at >= 0) return { name: checkName(text.slice(0, at)), alias: checkName(text.slice(at + 1), 'alias') };
  const colon = text.lastIndexOf(':');
  if (colon >= 0) {
    const version = text.slice(colon + 1);
    if (!/^[1-9]\d{0,8}$/.test(version)) throw new InvalidArgumentError(`${quoted(ref)}: the version after ":" must be a positive whole number`);
    return { name: checkName(text.slice(0, colon)), version: Number(version) };
  }
  return { name: checkName(text) };
}

export function formatRef(ref: ArtifactRef): string {
  return ref.alias !== undefined ? `${ref.name}@${ref.alias}` : ref.version !== undefined ? `${ref.name}:${ref.version}` : ref.name;
}
