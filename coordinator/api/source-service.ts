// SourceService: model sources of the caller's tenant (admins may name another). Developers and
// admins create, delete and sync them, as they push models; consumers list and show them. The
// poller is the leader's (coordinator/sources/source-poller.ts); records live in the store.
import type * as grpc from '@grpc/grpc-js';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { Source } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import type { Clock } from '../../shared/clock.js';
import type { FencedWriter } from '../node-registry.js';
import { credentialFor, type SourceCredentials } from '../sources/source-credentials.js';
import type { SourcePoller } from '../sources/source-poller.js';
import { initialStatus, toProtoSource, type SourceRecord } from '../sources/source-record.js';
import type { RpcEdge } from './rpc.js';
import { createSourceSchema, listSourcesSchema, sourceNameSchema } from './source-schemas.js';
import { listScope, tenantOf } from './tenant-service.js';

/** Sources per tenant at most: each costs a listing of its bucket per interval. */
export const MAX_SOURCES_PER_TENANT = 100;

export interface SourceServiceDeps {
  edge: RpcEdge;
  store: Store;
  clock: Clock;
  credentials: SourceCredentials;
  /** The leader's fenced writer; throws NotLeaderError on a follower. */
  writer(): FencedWriter;
  /** The leader's poller; throws NotLeaderError on a follower. */
  poller(): SourcePoller;
}

export function sourceService(deps: SourceServiceDeps): grpc.UntypedServiceImplementation {
  const { edge, store } = deps;
  const view = (record: SourceRecord): Source => {
    const source = toProtoSource(record);
    if (deps.poller().syncing(record.tenant, record.spec.name)) source.status = { ...source.status!, state: 'syncing' };
    return source;
  };
  const load = async (tenant: string, name: string): Promise<SourceRecord> => {
    const kv = await store.get(keys.source(tenant, name));
    if (!kv) throw new NotFoundError(`source "${name}" not found; \`mlfleetctl sources ls\` lists them`);
    return JSON.parse(kv.value) as SourceRecord;
  };
  return {
    CreateSource: edge.unary(
      'SourceService.CreateSource',
      createSourceSchema,
      async ({ spec, tenant: requested }, { principal }) => {
        const tenant = tenantOf(principal, requested);
        const valid = spec!;
        if (valid.credentials) {
          const found = credentialFor(deps.credentials, valid.credentials, tenant);
          if ('refusal' in found) throw new InvalidArgumentError(found.refusal);
        }
        const { kvs } = await store.range(keys.tenantSourcesPrefix(tenant));
        if (kvs.length >= MAX_SOURCES_PER_TENANT) throw new InvalidArgumentError(`tenant "${tenant}" has ${kvs.length} sources, the most it may have; remove one first`);
        const record: SourceRecord = { tenant, spec: { ...valid, layout: valid.layout as 'files' | 'version-dirs' }, createdAtMs: deps.clock.now(), status: initialStatus(), imported: {} };
        const key = keys.source(tenant, valid.name);
        const result = await deps.writer().txn([{ key, target: 'createRevision', op: '=', value: 0 }], [{ type: 'put', key, value: JSON.stringify(record) }]);
        if (!result.succeeded) throw new AlreadyExistsError(`source "${valid.name}" already exists; remove it first to change it`);
        return toProtoSource(record);
      },
      ({ spec }) => `source/${spec?.name ?? ''}`,
    ),
    ListSources: edge.unary('SourceService.ListSources', listSourcesSchema, async ({ tenant }, { principal }) => {
      const scope = listScope(principal, tenant);
      const { kvs } = await store.range(scope === undefined ? keys.sourcesPrefix : keys.tenantSourcesPrefix(scope));
      return { sources: kvs.map((kv) => view(JSON.parse(kv.value) as SourceRecord)) };
    }),
    GetSource: edge.unary('SourceService.GetSource', sourceNameSchema, async ({ name, tenant }, { principal }) => view(await load(tenantOf(principal, tenant), name))),
    DeleteSource: edge.unary(
      'SourceService.DeleteSource',
      sourceNameSchema,
      async ({ name, tenant: requested }, { principal }) => {
        const tenant = tenantOf(principal, requested);
        await load(tenant, name);
        await deps.writer().txn([], [{ type: 'delete', key: keys.source(tenant, name) }]);
        deps.poller().forget(tenant, name);
        return {};
      },
      ({ name }) => `source/${name}`,
    ),
    SyncSource: edge.unary(
      'SourceService.SyncSource',
      sourceNameSchema,
      async ({ name, tenant: requested }, { principal }) => {
        const tenant = tenantOf(principal, requested);
        await load(tenant, name);
        const { imported } = await deps.poller().syncNow(tenant, name);
        return { source: view(await load(tenant, name)), imported };
      },
      ({ name }) => `source/${name}`,
    ),
  };
}
