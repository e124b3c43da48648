// The docker driver: one container per allocation, through the Docker engine API (dockerode).
// Containers carry labels naming their allocation, kind, workload, node and cluster; the labels
// are the only record the driver keeps, so a restarted agent finds its containers with list()
// and adopts them (DESIGN principle 7), and a container that is not labelled with this node is
// never touched. Nor is one labelled with another cluster: two clusters (production and a dev
// cluster, say) may run agents of the same node name on one engine (issue 14). A container of
// this node with no cluster label was made before clusters had ids; it is adopted only when this
// agent's own records say it started that allocation (ownsUnlabelled), which no other cluster's
// agent can claim, and it is replaced by a labelled one when it next starts. Images are never
// pulled: they are built on the host (`npm run images`).
//
// Containers are boxed (issue 13): uid 1000 (the images' user), no capabilities, no new
// privileges, the engine's seccomp profile, a PIDs limit; each tenant's containers sit on the
// tenant's own bridge network (Docker drops traffic between bridge networks), and ports are
// published on loopback, so a replica is reached through its host's gateway only. Gang workers
// on one host meet on their tenant network (peersSeenFromContainer); a worker with peers on
// other hosts is also published on the address the coordinator told them, nowhere else.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import Docker from 'dockerode';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { JOB_PEER_PORT, splitHostPort } from '../../shared/workloads.js';
import { epochSeconds, lastBytes, logEntries } from './docker-logs.js';
import type { Driver, LogOptions, StartHooks, Task, TaskStatus } from './driver.js';

export const LABELS = {
  allocation: 'mlfleet.allocation',
  workload: 'mlfleet.workload',
  kind: 'mlfleet.kind',
  tenant: 'mlfleet.tenant',
  node: 'mlfleet.node',
  /** The cluster's id (coordinator/bootstrap.ts): containers and networks of other clusters are never touched. */
  cluster: 'mlfleet.cluster',
  /** On networks the driver made: "tenant". */
  network: 'mlfleet.network',
} as const;

/**
 * Processes (threads included) one container may hold: far above what a server or a trainer
 * with its data loader workers uses, far below what takes the host's pid space down (a fork
 * bomb stops here).
 */
export const PIDS_LIMIT = 4096;
/** The user tasks run as, whatever the image says: the images' own user (scripts/images/rootfs.mjs IMAGE_USER). */
export const TASK_USER = { uid: 1000, gid: 1000 } as const;

/**
 * The bridge network a tenant's containers sit on, on every host: one per cluster, so tenants of
 * the same name in two clusters on one engine do not share a network.
 */
export function tenantNetworkName(tenant: string, cluster?: string): string {
  return cluster ? `mlfleet-${cluster}-tenant-${tenant}` : `mlfleet-tenant-${tenant}`;
}

/** Where a container is attached, as the driver found or made it. */
export interface ContainerNetwork {
  /** The tenant's network (tenantNetworkName), by name or, as the driver gives it, by id. */
  name: string;
  /**
   * A gang worker whose peers dial it at a non-loopback address: that address (resolved),
   * which its peer port is also published on.
   */
  peerHostIp?: string;
}

/**
 * Docker keeps at most this much of a container's output (json-file: the live file plus one
 * rotated), so a chatty task cannot fill the host's disk.
 */
export const LOG_MAX_SIZE = '10m';
export const LOG_MAX_FILES = 2;

// A first guess at bytes per line when turning tailBytes into docker's tail (in lines).
const TAIL_BYTES_PER_LINE = 64;
// Docker reports times it does not know as year 1.
const ZERO_TIME = /^0001-/;
/** How many times a start looks up or makes a tenant's network that other agents remove meanwhile. */
const NETWORK_ATTEMPTS = 4;
/** The engine's word for a container's network removed before the container was made or started. */
const NETWORK_GONE = /\bnetwork \S+ not found/i;

export function containerName(allocationId: string): string {
  return `mlfleet-${allocationId}`;
}

/** The create request for `task`'s container: pure, so what reaches the engine is testable anywhere. */
export function containerSpec(task: Task, node: string, network: ContainerNetwork, cluster?: string): Docker.ContainerCreateOptions {
  const { spec } = task;
  const port = spec.port > 0 ? `${spec.port}/tcp` : undefined;
  const hostConfig: Docker.HostConfig = {
    // 0 is "no limit" for both, which is what a zero request means.
    NanoCpus: task.cpuMillis * 1_000_000,
    Memory: task.memoryBytes,
    // No swap beyond the limit: a task over its memory is OOM killed (and says so in list())
    // rather than slowing the host down.
    ...(task.memoryBytes > 0 ? { MemorySwap: task.memoryBytes } : {}),
    Binds: task.mounts.map((m) => `${m.hostPath}:${m.containerPath}${m.readOnly ? ':ro' : ''}`),
    LogConfig: { Type: 'json-file', Config: { 'max-size': LOG_MAX_SIZE, 'max-file': String(LOG_MAX_FILES) } },
    // The coordinator replaces a failed allocation (maybe elsewhere); docker must not restart it.
    RestartPolicy: { Name: 'no' },
    // A small init as PID 1 forwards SIGTERM to the task and reaps its children: node (or
    // python) as PID 1 ignores SIGTERM, and every stop would wait out the grace period.
    Init: true,
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges:true'],
    PidsLimit: PIDS_LIMIT,
    NetworkMode: network.name,
  };
  if (task.gpuIndexes.length > 0) {
    hostConfig.DeviceRequests = [{ Driver: 'nvidia', DeviceIDs: task.gpuIndexes.map(String), Capabilities: [['gpu']] }];
  }
  if (port && task.hostPort > 0) {
    // Loopback only: this host's gateway reaches a replica there, and nothing else does (a
    // container's loopback is its own). A gang worker whose peers are on other hosts is also
    // published on the address they dial; peers on this host dial it on the tenant network.
    const on = ['127.0.0.1', ...(task.kind === 'job' && network.peerHostIp ? [network.peerHostIp] : [])];
    hostConfig.PortBindings = { [port]: [...new Set(on)].map((HostIp) => ({ HostIp, HostPort: String(task.hostPort) })) };
  }
  const env = peersSeenFromContainer(task.env);
  const aliases = task.kind === 'job' && task.hostPort > 0 ? [peerAlias(task.hostPort)] : [];
  return {
    name: containerName(task.allocationId),
    Image: spec.image,
    User: `${TASK_USER.uid}:${TASK_USER.gid}`,
    ...(spec.command.length > 0 ? { Cmd: spec.command } : {}),
    Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
    Labels: {
      [LABELS.allocation]: task.allocationId,
      [LABELS.workload]: task.workload,
      [LABELS.kind]: task.kind,
      [LABELS.tenant]: task.tenant,
      [LABELS.node]: node,
      ...(cluster ? { [LABELS.cluster]: cluster } : {}),
    },
    ...(port ? { ExposedPorts: { [port]: {} } } : {}),
    Tty: false,
    OpenStdin: false,
    HostConfig: hostConfig,
    ...(aliases.length > 0 ? { NetworkingConfig: { EndpointsConfig: { [network.name]: { Aliases: aliases } } } } : {}),
  };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/**
 * The name a gang worker publishing host port `hostPort` has on its tenant network: host ports
 * are unique on a host, so its peers on this host find it by that name.
 */
export function peerAlias(hostPort: number | string): string {
  return `mlfleet-peer-${hostPort}`;
}

/**
 * A gang's peers as its workers' containers must dial them. Nodes that advertise a loopback
 * address (a single-machine cluster, the default `--advertise`) name every peer by loopback and
 * its host port, but inside a container loopback is the container itself, and a port published
 * on a host address is reached from every bridge through Docker's proxy (any tenant's container):
 * such a peer is dialled on its tenant network instead, by its alias (peerAlias) at the port it
 * listens on in its container (JOB_PEER_PORT). The same env (===) when nothing is loopback.
 */
export function peersSeenFromContainer(env: Record<string, string>): Record<string, string> {
  const peers = env.MLFLEET_PEERS?.split(',') ?? [];
  const host = (address: string) => splitHostPort(address).host;
  if (!peers.some((p) => LOOPBACK.test(host(p))) && !LOOPBACK.test(env.MASTER_ADDR ?? '')) return env;
  const seen = (address: string) => (LOOPBACK.test(host(address)) ? `${peerAlias(splitHostPort(address).port)}:${JOB_PEER_PORT}` : address);
  const masterLocal = env.MASTER_ADDR !== undefined && LOOPBACK.test(env.MASTER_ADDR) && env.MASTER_PORT !== undefined;
  return {
    ...env,
    ...(env.MLFLEET_PEERS !== undefined ? { MLFLEET_PEERS: peers.map(seen).join(',') } : {}),
    ...(masterLocal ? { MASTER_ADDR: peerAlias(env.MASTER_PORT!), MASTER_PORT: String(JOB_PEER_PORT) } : {}),
  };
}

/** The host a gang worker's peers dial it at, when that is not loopback (undefined otherwise). */
export function ownPeerHost(task: Task): string | undefined {
  const own = task.env.MLFLEET_PEERS?.split(',')[task.spec.rank];
  if (!own) return undefined;
  const host = splitHostPort(own).host;
  return LOOPBACK.test(host) ? undefined : host;
}

export interface DockerDriverOptions {
  /** This agent's node name: the containers it owns carry it as a label. */
  node: string;
  log: Logger;
  /** The engine (default: the local one, or DOCKER_HOST). */
  docker?: Docker;
  /** How long the engine has to answer at start (default 10 s). */
  pingTimeoutMs?: number;
  /**
   * The cluster this agent belongs to (from the leader's welcome, kept in the agent's
   * database), undefined until it first reaches a leader. Left out (tests of the driver alone),
   * containers are told apart by node alone, as before clusters had ids.
   */
  cluster?: () => string | undefined;
  /** Whether this agent's records say it started the allocation: adopts a container that has no cluster label. */
  ownsUnlabelled?: (allocationId: string) => boolean;
  /**
   * A tenant's network outlives its last container by this long (default 60 s), so a replica
   * that comes back at once (a deployment woken from zero, a restart) does not wait for a new
   * network; 0: removed with the last container.
   */
  networkGraceMs?: number;
}

export class DockerDriver implements Driver {
  readonly name = 'docker' as const;
  readonly taskOwner = { ...TASK_USER, viaHostPath: false };

  private constructor(
    private readonly docker: Docker,
    private readonly node: string,
    private readonly log: Logger,
    private readonly clusterOf: (() => string | undefined) | undefined,
    private readonly ownsUnlabelled: (allocationId: string) => boolean,
    private readonly networkGraceMs: number,
  ) {}

  /** Tenant networks being looked up or made now, by name. */
  private readonly networksInFlight = new Map<string, Promise<string>>();

  /** Tenants whose network is to be released once its grace has passed. */
  private readonly releases = new Map<string, NodeJS.Timeout>();

  /**
   * Fails unless the engine answers within `pingTimeoutMs`, so the agent finds out at start, not
   * at the first task, and never falls back to running tasks as plain processes.
   */
  static async create(options: DockerDriverOptions): Promise<DockerDriver> {
    const docker = options.docker ?? new Docker();
    const timeoutMs = options.pingTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        docker.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      const where = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
      throw new UnavailableError(
        `the docker driver (the default) needs a Docker engine, and none answers at ${where} (${(err as Error).message}): start dockerd, or run the agent with --driver process, which runs tasks as plain processes of --task-user on this host, without containers: for trusted, single-tenant hosts only`,
      );
    } finally {
      clearTimeout(timer);
    }
    return new DockerDriver(docker, options.node, options.log.child({ component: 'docker-driver' }), options.cluster, options.ownsUnlabelled ?? (() => false), options.networkGraceMs ?? 60_000);
  }

  async start(task: Task, hooks?: StartHooks): Promise<void> {
    const log = this.log.child({ allocation: task.allocationId });
    const existing = await this.find(task.allocationId);
    if (existing) {
      try {
        // Created but never started: the agent stopped between the two calls. Finish the job.
        if (existing.State === 'created') await this.startContainer(this.docker.getContainer(existing.Id), task);
        log.debug({ container: existing.Id, state: existing.State }, 'container already exists; leaving it');
        return;
      } catch (err) {
        // One whose network went away has been removed by startContainer: it is made anew below.
        if (!NETWORK_GONE.test((err as Error).message)) throw err;
      }
    }
    const cluster = this.clusterOf?.();
    if (this.clusterOf && !cluster) {
      throw new UnavailableError(`node ${this.node} does not know its cluster's id yet (it has not reached a leader since it was upgraded); allocation ${task.allocationId} starts once it has`);
    }
    // Another agent of the cluster on this engine may remove the tenant's network between its
    // lookup and the container's start (it released it, or kept an older copy made at the same
    // moment): make or find it again, a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        const container = await this.createAndStart(task, cluster, hooks);
        if (container) log.info({ container: container.id, image: task.spec.image, hostPort: task.hostPort, gpus: task.gpuIndexes }, 'container started');
        return;
      } catch (err) {
        if (attempt >= NETWORK_ATTEMPTS || !NETWORK_GONE.test((err as Error).message)) throw err;
        log.info({ attempt, err: (err as Error).message }, "the tenant's network went away meanwhile; starting again on a fresh lookup");
      }
    }
  }

  /** The created and started container, or none when another call of this agent made it meanwhile. */
  private async createAndStart(task: Task, cluster: string | undefined, hooks: StartHooks | undefined): Promise<Docker.Container | undefined> {
    let container: Docker.Container;
    try {
      container = await this.createContainer(task, cluster);
    } catch (err) {
      const status = statusCode(err);
      if (status === 404 && /no such image/i.test((err as Error).message)) {
        throw new FailedPreconditionError(
          `image ${task.spec.image} is not in this host's Docker engine, and mlfleet never pulls images: build it on this host with \`npm run images\` (or \`docker load\` it)`,
        );
      }
      if (status === 409) {
        // Another call created it in between, or a stranger holds the name.
        if (await this.find(task.allocationId)) return undefined;
        throw new AlreadyExistsError(
          `a container named ${containerName(task.allocationId)} exists but is not node ${this.node}'s task for this allocation; remove it (docker rm -f ${containerName(task.allocationId)})`,
        );
      }
      throw err;
    }
    hooks?.created?.();
    await this.startContainer(container, task);
    return container;
  }

  async stop(allocationId: string, graceMs: number): Promise<void> {
    const existing = await this.find(allocationId);
    if (!existing) return;
    await stopContainer(this.docker.getContainer(existing.Id), graceMs);
    this.log.info({ allocation: allocationId, container: existing.Id }, 'container stopped; kept with its logs');
  }

  async remove(allocationId: string, graceMs: number): Promise<void> {
    const existing = await this.find(allocationId);
    if (!existing) return;
    const container = this.docker.getContainer(existing.Id);
    await stopContainer(container, graceMs);
    try {
      await container.remove({ force: true, v: true });
    } catch (err) {
      // 409: a removal is already in progress.
      if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err;
    }
    this.log.info({ allocation: allocationId, container: existing.Id }, 'container removed');
    const tenant = existing.Labels[LABELS.tenant];
    if (tenant !== undefined) await this.releaseNetworkLater(tenant);
  }

  /** Releases the tenant's network after the grace (each removal starts it again). */
  private async releaseNetworkLater(tenant: string): Promise<void> {
    clearTimeout(this.releases.get(tenant));
    if (this.networkGraceMs <= 0) return this.releaseNetwork(tenant);
    const timer = setTimeout(() => {
      this.releases.delete(tenant);
      void this.releaseNetwork(tenant);
    }, this.networkGraceMs);
    timer.unref();
    this.releases.set(tenant, timer);
  }

  /**
   * Removes the tenant's network once no container of the tenant (of this cluster, any node)
   * is left on the engine: Docker has address pools for a few dozen bridge networks only, so a
   * host must not keep one for every tenant it ever ran. One in use (another agent's container
   * was attached meanwhile) stays: Docker refuses to remove it.
   */
  private async releaseNetwork(tenant: string): Promise<void> {
    const cluster = this.clusterOf?.();
    const labels = [`${LABELS.tenant}=${tenant}`, ...(cluster ? [`${LABELS.cluster}=${cluster}`] : [])];
    try {
      const left = await this.docker.listContainers({ all: true, filters: { label: labels } });
      if (left.length > 0) return;
      for (const network of await this.networksNamed(tenantNetworkName(tenant, cluster))) {
        await this.docker.getNetwork(network.Id).remove().catch(() => undefined);
      }
    } catch (err) {
      this.log.debug({ tenant, err: (err as Error).message }, 'could not release the tenant network; it stays for now');
    }
  }

  /** Creates the task's container on its tenant's network (made when missing). */
  private async createContainer(task: Task, cluster: string | undefined): Promise<Docker.Container> {
    return this.docker.createContainer(containerSpec(task, this.node, await this.networkFor(task), cluster));
  }

  async list(): Promise<TaskStatus[]> {
    const containers = (await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${this.node}`] } })).filter((c) => this.owns(c));
    const statuses = await Promise.all(
      containers.map(async (summary) => {
        const allocationId = summary.Labels[LABELS.allocation];
        if (!allocationId) return undefined;
        try {
          return taskStatus(allocationId, await this.docker.getContainer(summary.Id).inspect());
        } catch (err) {
          if (statusCode(err) === 404) return undefined; // removed since it was listed
          throw err;
        }
      }),
    );
    return statuses.filter((s): s is TaskStatus => s !== undefined);
  }

  async *logs(allocationId: string, options: LogOptions): AsyncGenerator<Buffer> {
    const existing = await this.find(allocationId);
    if (!existing) throw new NotFoundError(`allocation ${allocationId} has no container on node ${this.node}`);
    const container = this.docker.getContainer(existing.Id);
    const { signal } = options;
    try {
      const kept = await this.keptLogs(container, options.tailBytes, signal);
      if (kept.data.length > 0) yield kept.data;
      if (!options.follow || signal.aborted) return;
      // Follow from the second of the last entry already given, and skip what was given:
      // docker's `since` is in whole seconds, its timestamps are in nanoseconds.
      const stream = await container.logs({
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: kept.lastTimestamp ? epochSeconds(kept.lastTimestamp) : 0,
        abortSignal: signal,
      });
      try {
        for await (const entry of logEntries(stream as AsyncIterable<Buffer>, true)) {
          if (kept.lastTimestamp && entry.timestamp <= kept.lastTimestamp) continue;
          yield entry.data;
        }
      } finally {
        (stream as unknown as { destroy?: () => void }).destroy?.();
      }
    } catch (err) {
      if (signal.aborted) return;
      if (statusCode(err) === 404) throw new NotFoundError(`allocation ${allocationId}'s container was removed`);
      throw err;
    }
  }

  async close(): Promise<void> {
    // Containers outlive the agent, and dockerode holds no connection open. A network in its
    // grace stays: the next removal of the tenant's last container on this engine releases it.
    for (const timer of this.releases.values()) clearTimeout(timer);
    this.releases.clear();
  }

  /** The tenant's network (made when missing) and, for a gang worker dialled from other hosts, the address to publish on. */
  private async networkFor(task: Task): Promise<ContainerNetwork> {
    // Looked up at every start (a start is rare, a lookup one call): another agent of the
    // cluster on this engine may have released the network since (releaseNetwork).
    const network = this.tenantNetwork(task.tenant);
    const host = task.kind === 'job' ? ownPeerHost(task) : undefined;
    const peerHostIp = host === undefined ? undefined : isIP(host) ? host : (await lookup(host)).address;
    return { name: await network, ...(peerHostIp ? { peerHostIp } : {}) };
  }

  /**
   * The id of the tenant's network, made when missing. Agents on one host may make it at the
   * same moment, and the engine then keeps two of that name: every agent takes the oldest and
   * removes the others.
   */
  private tenantNetwork(tenant: string): Promise<string> {
    // Two starts of one tenant at once (a gang's workers) share one lookup-or-create, so this
    // agent never makes two networks of one name itself.
    const name = tenantNetworkName(tenant, this.clusterOf?.());
    const pending = this.networksInFlight.get(name);
    if (pending) return pending;
    const made = this.lookUpOrMakeTenantNetwork(tenant).finally(() => this.networksInFlight.delete(name));
    this.networksInFlight.set(name, made);
    return made;
  }

  private async lookUpOrMakeTenantNetwork(tenant: string): Promise<string> {
    const cluster = this.clusterOf?.();
    const name = tenantNetworkName(tenant, cluster);
    const labels: Record<string, string> = { [LABELS.network]: 'tenant', [LABELS.tenant]: tenant, ...(cluster ? { [LABELS.cluster]: cluster } : {}) };
    for (let attempt = 1; ; attempt++) {
      let found = await this.networksNamed(name);
      if (found.length === 0) {
        try {
          await this.docker.createNetwork({
            Name: name,
            Driver: 'bridge',
            CheckDuplicate: true,
            Labels: labels,
          });
          this.log.info({ network: name, tenant }, "created the tenant's network");
        } catch (err) {
          if (statusCode(err) !== 409) throw err; // 409: another agent made it meanwhile
        }
        found = await this.networksNamed(name);
      }
      const foreign = found.find((n) => Object.entries(labels).some(([key, value]) => n.Labels?.[key] !== value) || n.Driver !== 'bridge');
      if (foreign) {
        const wanted = Object.entries(labels).map(([key, value]) => `${key}=${value}`).join(', ');
        throw new FailedPreconditionError(
          `Docker network ${name} exists but is not mlfleet's network for tenant ${tenant} (labels ${wanted}); remove it (docker network rm ${name})`,
        );
      }
      const [kept, ...extra] = found.sort((x, y) => x.Created.localeCompare(y.Created) || x.Id.localeCompare(y.Id));
      if (kept) {
        for (const network of extra) await this.docker.getNetwork(network.Id).remove().catch(() => undefined);
        return kept.Id;
      }
      // Made, then removed by another agent before the list: look again.
      if (attempt >= NETWORK_ATTEMPTS) throw new UnavailableError(`Docker network ${name} was created but cannot be found (removed again ${attempt} times)`);
    }
  }

  private async networksNamed(name: string): Promise<Docker.NetworkInspectInfo[]> {
    // The engine's name filter matches parts of names.
    const listed = (await this.docker.listNetworks({ filters: { name: [name] } })) as Docker.NetworkInspectInfo[];
    return listed.filter((n) => n.Name === name);
  }

  private async startContainer(container: Docker.Container, task: Task): Promise<void> {
    try {
      await container.start();
    } catch (first) {
      if (statusCode(first) === 304) return; // already running
      let err = first;
      // Another agent on this engine made the tenant's network at the same moment and has not
      // removed its copy yet: drop the copies (tenantNetwork keeps the oldest) and start again.
      if (/is ambiguous/.test((first as Error).message)) {
        err = await this.tenantNetwork(task.tenant)
          .then(() => container.start())
          .then(
            () => undefined,
            (again: unknown) => (statusCode(again) === 304 ? undefined : again),
          );
        if (err === undefined) return;
      }
      // Leave nothing half-made behind (a port taken, a bad mount, an engine shutting down):
      // the next start begins anew. The reconciler tries again should all of these fail.
      for (let attempt = 0; attempt < 3; attempt++) {
        const removed = await container.remove({ force: true }).then(
          () => true,
          (removeError: unknown) => statusCode(removeError) === 404,
        );
        if (removed) break;
        await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)));
      }
      throw new FailedPreconditionError(`container for allocation ${task.allocationId} (${task.spec.image}) did not start: ${(err as Error).message}`);
    }
  }

  /** This node's container for the allocation, if there is one. */
  private async find(allocationId: string): Promise<Docker.ContainerInfo | undefined> {
    const found = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.allocation}=${allocationId}`, `${LABELS.node}=${this.node}`] },
    });
    return found.find((c) => this.owns(c));
  }

  /**
   * Whether a container labelled with this node is this agent's: it carries this cluster's id,
   * or none and this agent started its allocation. Without a cluster (the driver alone), all are.
   */
  private owns(container: Docker.ContainerInfo): boolean {
    if (!this.clusterOf) return true;
    const labelled = container.Labels?.[LABELS.cluster];
    if (labelled) return labelled === this.clusterOf();
    const allocationId = container.Labels?.[LABELS.allocation];
    return allocationId !== undefined && this.ownsUnlabelled(allocationId);
  }

  /**
   * What docker keeps of the output, cut to the last `tailBytes`. Docker's tail counts lines:
   * ask for a guess and ask again for more while the answer is short and there may be more.
   */
  private async keptLogs(container: Docker.Container, tailBytes: number, signal: AbortSignal): Promise<{ data: Buffer; lastTimestamp: string }> {
    let lines = tailBytes > 0 ? Math.max(16, Math.ceil(tailBytes / TAIL_BYTES_PER_LINE)) : undefined;
    for (;;) {
      const raw = await container.logs({ follow: false, stdout: true, stderr: true, timestamps: true, abortSignal: signal, ...(lines ? { tail: lines } : {}) });
      const parts: Buffer[] = [];
      let lastTimestamp = '';
      for await (const entry of logEntries(raw, true)) {
        parts.push(entry.data);
        lastTimestamp = entry.timestamp;
      }
      const data = Buffer.concat(parts);
      if (lines === undefined || data.length >= tailBytes || parts.length < lines) return { data: lastBytes(data, tailBytes), lastTimestamp };
      lines *= 8;
    }
  }
}

/** docker stop: SIGTERM, then SIGKILL after the grace period (in whole seconds). */
async function stopContainer(container: Docker.Container, graceMs: number): Promise<void> {
  try {
    await container.stop({ t: Math.ceil(Math.max(0, graceMs) / 1000) });
  } catch (err) {
    // 304: already stopped; 404: already gone.
    if (statusCode(err) !== 304 && statusCode(err) !== 404) throw err;
  }
}

function taskStatus(allocationId: string, info: Docker.ContainerInspectInfo): TaskStatus {
  const state = info.State;
  const exited = state.Status === 'exited' || state.Status === 'dead';
  let reason = '';
  if (state.OOMKilled) reason = 'OOM killed';
  else if (state.Error) reason = state.Error;
  else if (state.Status === 'created') reason = 'created but never started';
  return {
    allocationId,
    kind: info.Config.Labels?.[LABELS.kind] ?? '',
    running: state.Running,
    exitCode: exited ? state.ExitCode : undefined,
    startedAtMs: time(state.StartedAt),
    finishedAtMs: exited ? time(state.FinishedAt) : 0,
    reason,
  };
}

function time(iso: string | undefined): number {
  if (!iso || ZERO_TIME.test(iso)) return 0;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : 0;
}

function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number } | undefined)?.statusCode;
}
