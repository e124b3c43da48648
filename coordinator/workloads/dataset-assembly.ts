// A partitioned job's output dataset, made by the leader once every partition of an attempt has
// exited 0 with its part stored: the parts (directory tars) are unpacked side by side in a
// scratch directory, their files joined into one tree — a path two partitions wrote is a
// conflict, never a silent overwrite — and the tree is packed deterministically and recorded as
// the dataset's next version, with the job and the dataset versions it read as its lineage.
// Made once per attempt: a version already tagged with the job and attempt (made by a leader
// that stopped before it recorded the job's success) is the answer again.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { inferArtifactFormat } from '../../shared/artifact-ref.js';
import { FailedPreconditionError, MlfleetError, NotFoundError } from '../../shared/errors.js';
import { packDirectory, unpackTar } from '../../shared/tar.js';
import type { FencedWriter } from '../node-registry.js';
import { SOURCE_ATTEMPT_LABEL, type VersionRecord } from '../registry/artifact-record.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { OutputPart } from './records.js';

export interface DatasetAssembly {
  tenant: string;
  dataset: string;
  /** "job/NAME". */
  sourceJob: string;
  attempt: number;
  /** The dataset versions the job read: "name:3". */
  sourceDatasets: string[];
  /** Every partition's part, by partition index. */
  parts: Array<OutputPart & { partition: number }>;
}

/**
 * Whether a failed assembly fails the job: the parts themselves are wrong (a conflict, nothing
 * written, a part that is not a tar or is gone) or the tenant's storage is full. Anything else
 * (the leader moving, the blob store away) is tried again by a later pass.
 */
export function failsTheJob(err: unknown): boolean {
  return MlfleetError.is(err) && ['INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'NOT_FOUND', 'RESOURCE_EXHAUSTED'].includes(err.code);
}

/** Makes the dataset's version from the parts; resolves with its number. */
export async function assembleDataset(registry: ArtifactRegistry, writer: FencedWriter, scratch: string, job: DatasetAssembly, signal: AbortSignal): Promise<number> {
  const made = (version: VersionRecord) => version.metadata.sourceJob === job.sourceJob && version.metadata.labels?.[SOURCE_ATTEMPT_LABEL] === String(job.attempt);
  const earlier = (await registry.get('dataset', job.tenant, job.dataset).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err))))?.versions.find(made);
  if (earlier) return earlier.version;

  await fs.mkdir(scratch, { recursive: true });
  const dir = await fs.mkdtemp(path.join(scratch, 'assembly-'));
  try {
    const union = path.join(dir, 'union');
    await fs.mkdir(union);
    const writers: Writers = new Map();
    const formats = new Set<string>();
    let files = 0;
    for (const part of [...job.parts].sort((a, b) => a.partition - b.partition)) {
      signal.throwIfAborted();
      const unpacked = path.join(dir, `part-${part.partition}`);
      // A part pushed to an earlier leader may be on another coordinator: fetched from it first.
      await registry.fetchMissing?.(part.digest, part.sizeBytes).catch(() => undefined);
      const source = await registry.blobs.read(part.digest).catch((err: unknown) => {
        if (err instanceof NotFoundError) throw new NotFoundError(`the output of partition ${part.partition} (${part.digest}) is no longer stored`);
        throw err;
      });
      await unpackTar(source, unpacked);
      for (const file of await joinInto(unpacked, union, part.partition, writers)) {
        formats.add(inferArtifactFormat('dataset', file, undefined));
        files += 1;
      }
    }
    if (files === 0) throw new FailedPreconditionError(`no partition wrote anything to /output (all ${job.parts.length} were empty), so there is no dataset to make`);
    signal.throwIfAborted();
    const hash = createHash('sha256');
    let sizeBytes = 0;
    for await (const chunk of packDirectory(union) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      sizeBytes += chunk.length;
    }
    const { version } = await registry.push(
      writer,
      {
        kind: 'dataset',
        tenant: job.tenant,
        // Made by the leader from the parts the partitions' nodes pushed, not by a token.
        createdBy: '',
        name: job.dataset,
        // One format when every file names the same (part-0.csv, part-1.csv …), else other.
        format: formats.size === 1 ? [...formats][0]! : 'other',
        directory: true,
        sizeBytes,
        digest: `sha256:${hash.digest('hex')}`,
        metadata: {
          type: '',
          inputFormat: '',
          outputFormat: '',
          accuracy: 0,
          labels: { [SOURCE_ATTEMPT_LABEL]: String(job.attempt) },
          sourceJob: job.sourceJob,
          sourceDatasets: job.sourceDatasets,
        },
        once: made,
      },
      packDirectory(union) as AsyncIterable<Buffer>,
    );
    return version.version;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Who first wrote each path of the union, and whether it is a directory there. */
type Writers = Map<string, { partition: number; directory: boolean }>;

/**
 * Moves every file under `from` to the same path under `to`, recording which partition wrote
 * it; a path another partition already wrote as a file, or a file where another partition has
 * a directory, is a conflict (directories themselves are shared). Resolves with the files moved.
 */
async function joinInto(from: string, to: string, partition: number, writers: Writers): Promise<string[]> {
  const moved: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    for (const entry of await fs.readdir(path.join(from, relative), { withFileTypes: true })) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      const directory = entry.isDirectory();
      const other = writers.get(child);
      if (other && !(other.directory && directory)) {
        throw new FailedPreconditionError(
          `partitions ${other.partition} and ${partition} both wrote ${child} to /output; each partition must write paths of its own (e.g. part-$MLFLEET_PARTITION.csv)`,
        );
      }
      if (!other) writers.set(child, { partition, directory });
      if (directory) {
        await fs.mkdir(path.join(to, child), { recursive: true });
        await walk(child);
      } else {
        await fs.rename(path.join(from, child), path.join(to, child));
        moved.push(child);
      }
    }
  };
  await walk('');
  return moved;
}
