// Turns a --store spec into a Store: `sqlite:PATH` (the file and its folder are created) or
// `etcd:http://h1:2379,http://h2:2379` with an optional `?prefix=/ns/` namespace.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import type { Logger } from '../log.js';
import { EtcdStore } from './etcd-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  clock?: Clock;
  log?: Logger;
}

export type StoreSpec = { kind: 'sqlite'; path: string } | { kind: 'etcd'; endpoints: string[]; prefix: string };

const USAGE = 'a store is sqlite:PATH or etcd:http://HOST:PORT[,http://HOST:PORT...][?prefix=/NAMESPACE/]';

/** Parses a store spec; throws InvalidArgumentError saying what is wrong with it. */
export function parseStoreSpec(spec: string): StoreSpec {
  const colon = spec.indexOf(':');
  const scheme = colon < 0 ? '' : spec.slice(0, colon);
  const rest = spec.slice(colon + 1);
  if (scheme === 'sqlite') {
    if (rest === '') throw new InvalidArgumentError(`${USAGE}; "${spec}" has no path`);
    return { kind: 'sqlite', path: rest };
  }
  if (scheme === 'etcd') {
    const [list = '', query, ...extra] = rest.split('?');
    if (extra.length > 0) throw new InvalidArgumentError(`${USAGE}; "${spec}" has more than one "?"`);
    const params = new URLSearchParams(query ?? '');
    const unknown = [...params.keys()].filter((name) => name !== 'prefix');
    if (unknown.length > 0) throw new InvalidArgumentError(`${USAGE}; "${spec}" has unknown option(s) ${unknown.join(', ')}`);
    const endpoints = list.split(',').map((endpoint) => parseEndpoint(endpoint, spec));
    return { kind: 'etcd', endpoints, prefix: params.get('prefix') ?? '' };
  }
  throw new InvalidArgumentError(`${USAGE}; got "${spec}"`);
}

function parseEndpoint(endpoint: string, spec: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidArgumentError(`${USAGE}; "${endpoint}" in "${spec}" is not a URL`);
  }
  const plain = url.pathname === '/' && !url.search && !url.hash && !url.username;
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname || !plain) {
    throw new InvalidArgumentError(`${USAGE}; "${endpoint}" in "${spec}" must be http(s)://HOST:PORT`);
  }
  return `${url.protocol}//${url.hostname}:${url.port || '2379'}`; // an IPv6 hostname keeps its brackets
}

/** Opens the store a spec names. An etcd that does not answer fails within a few seconds. */
export async function openStore(spec: string, options: OpenStoreOptions = {}): Promise<Store> {
  const parsed = parseStoreSpec(spec);
  if (parsed.kind === 'sqlite') {
    if (parsed.path !== ':memory:') mkdirSync(path.dirname(path.resolve(parsed.path)), { recursive: true });
    return SqliteStore.create(parsed.path, options);
  }
  return EtcdStore.create({ endpoints: parsed.endpoints, prefix: parsed.prefix, ...options });
}
