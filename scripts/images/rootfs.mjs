// A minimal root filesystem for `FROM scratch` images, made from what this host already has:
// a binary plus every shared library `ldd` lists for it (the dynamic loader included), an
// /etc/passwd and /etc/group with a non-root user, a sticky /tmp and the CA bundle. Nothing is
// downloaded, which is what lets `npm run images` work without a registry (DESIGN "Images").
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';

/** The user images run as: never root, and the same id whatever the base image calls it. */
export const IMAGE_USER = { name: 'mlfleet', uid: 1000, gid: 1000 };

// Fixed times keep the archive's bytes, and so Docker's layer cache, stable between builds.
const MTIME = new Date('2024-01-01T00:00:00Z');
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * Absolute paths of the shared objects `binary` loads, as ldd resolves them on this host
 * (the loader too). Names without a path (linux-vdso) come from the kernel and are skipped.
 */
export async function sharedLibraries(binary) {
  let stdout;
  try {
    ({ stdout } = await promisify(execFile)('ldd', [binary]));
  } catch (err) {
    // A static binary: ldd says "not a dynamic executable" and exits 1.
    if (/not a dynamic executable|statically linked/.test(`${err.stdout ?? ''}${err.stderr ?? ''}`)) return [];
    throw new Error(`ldd ${binary} failed (${err.message}); install libc-bin, or build with --base IMAGE on a host with registry access`);
  }
  const libraries = new Set();
  for (const line of stdout.split('\n')) {
    const missing = /^\s*(\S+) => not found/.exec(line);
    if (missing) throw new Error(`${binary} needs ${missing[1]}, which this host does not have`);
    const resolved = /=>\s+(\/\S+)\s+\(/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (resolved) libraries.add(resolved[1]);
  }
  return [...libraries];
}

/**
 * The entries of a root filesystem that runs `binary` (installed as `/usr/local/bin/<name>`).
 * Each entry is a directory, a file copied from the host (`source`, symlinks followed) or a
 * file with the given `content`.
 */
export async function rootfsEntries(binary, name = path.basename(binary)) {
  const { uid, gid } = IMAGE_USER;
  const home = `/home/${IMAGE_USER.name}`;
  const entries = [
    { name: '/tmp', type: 'directory', mode: 0o1777 },
    { name: '/root', type: 'directory', mode: 0o700 },
    { name: home, type: 'directory', mode: 0o755, uid, gid },
    { name: `/usr/local/bin/${name}`, source: binary, mode: 0o755 },
    {
      name: '/etc/passwd',
      content: `root:x:0:0:root:/root:/sbin/nologin\n${IMAGE_USER.name}:x:${uid}:${gid}:${IMAGE_USER.name}:${home}:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n`,
    },
    { name: '/etc/group', content: `root:x:0:\n${IMAGE_USER.name}:x:${gid}:\nnogroup:x:65534:\n` },
    // Without it glibc asks DNS before /etc/hosts, and `localhost` may not resolve at all.
    { name: '/etc/nsswitch.conf', content: 'passwd: files\ngroup: files\nhosts: files dns\n' },
  ];
  for (const library of await sharedLibraries(binary)) {
    entries.push({ name: library, source: library, mode: 0o755 });
  }
  if (await exists(CA_BUNDLE)) entries.push({ name: CA_BUNDLE, source: CA_BUNDLE, mode: 0o644 });
  return withParents(entries);
}

/** Writes `entries` as a tar archive at `file`: parents before children, owned by root unless said. */
export async function writeTar(entries, file) {
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(file));
  for (const entry of entries) await addEntry(pack, entry);
  pack.finalize();
  await written;
}

/** Adds one entry to a tar-stream pack, streaming host files rather than reading them whole. */
export async function addEntry(pack, entry) {
  const header = {
    name: entry.name.replace(/^\/+/, '') + (entry.type === 'directory' ? '/' : ''),
    mode: entry.mode ?? (entry.type === 'directory' ? 0o755 : 0o644),
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    mtime: MTIME,
  };
  if (entry.type === 'directory') {
    await new Promise((resolve, reject) => pack.entry({ ...header, type: 'directory' }, (err) => (err ? reject(err) : resolve())));
  } else if (entry.content !== undefined) {
    const content = Buffer.from(entry.content);
    await new Promise((resolve, reject) => pack.entry({ ...header, type: 'file' }, content, (err) => (err ? reject(err) : resolve())));
  } else {
    const source = await realpath(entry.source);
    const { size } = await stat(source);
    let done;
    const finished = new Promise((resolve, reject) => (done = (err) => (err ? reject(err) : resolve())));
    const sink = pack.entry({ ...header, type: 'file', size }, done);
    await pipeline(createReadStream(source), sink);
    await finished;
  }
}

/** Adds a directory entry for every parent not already listed, and sorts parents first. */
function withParents(entries) {
  const byName = new Map(entries.map((e) => [e.name, e]));
  for (const entry of entries) {
    for (let dir = path.posix.dirname(entry.name); dir !== '/'; dir = path.posix.dirname(dir)) {
      if (!byName.has(dir)) byName.set(dir, { name: dir, type: 'directory', mode: 0o755 });
    }
  }
  return [...byName.values()].sort((a, b) => depth(a.name) - depth(b.name) || a.name.localeCompare(b.name));
}

function depth(name) {
  return name.split('/').length;
}

async function exists(file) {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
