// TLS on the gRPC API, with certificates made by scripts/make-certs.sh: a coordinator with a
// CA admits only agents and users whose certificate that CA signed (mutual TLS); an agent
// with a certificate from another CA, or a client with none, never gets a session; mlfleetctl
// takes the same --tls-* flags; bad TLS flags stop a daemon at start with a line naming the
// flag; a plain-text listener off loopback is warned about.
import { until } from '../helpers/eventually.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { CoordinatorSession } from '../../agent/session.js';
import { compileAgentOptions } from '../../agent/options.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { compileCoordinatorOptions } from '../../coordinator/options.js';
import { CoordinatorClient } from '../../shared/client.js';
import { seededRandom, systemClock } from '../../shared/clock.js';
import { MlfleetError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { channelCredentials, isLoopback, loadTls, warnIfPlaintext, type TlsFiles, type TlsMaterial } from '../../shared/tls.js';
import { runScript } from '../helpers/mlfleetctl.js';
import { startLeader } from '../helpers/coordinator.js';
import { REPO_ROOT, tempDir } from '../helpers/processes.js';

const MAKE_CERTS = path.join(REPO_ROOT, 'scripts', 'make-certs.sh');
const CLI = path.join(REPO_ROOT, 'dist', 'scripts', 'mlfleetctl.js');
const COORDINATOR_MAIN = path.join(REPO_ROOT, 'dist', 'coordinator', 'main.js');

let certsDir = '';
/** The cluster's CA and the rogue one, each with the certificates named in before(). */
const good = (name: string): TlsFiles => ({ cert: path.join(certsDir, 'good', `${name}.pem`), key: path.join(certsDir, 'good', `${name}-key.pem`) });
const goodCa = () => path.join(certsDir, 'good', 'ca.pem');
const rogue = (name: string): TlsFiles => ({ cert: path.join(certsDir, 'rogue', `${name}.pem`), key: path.join(certsDir, 'rogue', `${name}-key.pem`) });
const rogueCa = () => path.join(certsDir, 'rogue', 'ca.pem');

function makeCerts(dir: string, names: string[]): void {
  const run = spawnSync('bash', [MAKE_CERTS, dir, ...names], { encoding: 'utf8' });
  assert.equal(run.status, 0, `make-certs.sh ${dir} ${names.join(' ')}: ${run.stderr}`);
}

before(() => {
  certsDir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-tls-'));
  makeCerts(path.join(certsDir, 'good'), ['coordinator', 'agent', 'cli']);
  makeCerts(path.join(certsDir, 'rogue'), ['agent']);
});

after(() => rmSync(certsDir, { recursive: true, force: true }));

/** A logger that keeps every line, to assert on what was logged. */
function recordingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

interface TlsCluster {
  coordinator: Coordinator;
  admin: string;
  join: string;
}

/** One coordinator on loopback with the good CA's certificate, requiring client certificates. */
async function mutualTlsCoordinator(t: TestContext): Promise<TlsCluster> {
  const tls = loadTls({ ...good('coordinator'), ca: goodCa() }, 'server');
  return startLeader(t, { id: 'tls', tls });
}

function agentSession(t: TestContext, address: string, tls: TlsMaterial | undefined, joinToken: string) {
  const { log, lines } = recordingLogger();
  let credential: string | undefined;
  const abort = new AbortController();
  const session = new CoordinatorSession({
    coordinators: [address],
    clock: systemClock,
    random: seededRandom(3),
    log,
    credentials: channelCredentials(tls),
    usage: () => ({ cpuMillisUsed: 0, memoryUsedBytes: 0, gpus: [] }),
    onDesired: () => undefined,
    token: () => credential ?? joinToken,
    onCredential: (issued) => void (credential = issued),
    hello: () => ({
      nodeName: 'tls-node',
      agentVersion: 'test',
      address: '127.0.0.1:7780',
      labels: {},
      capacity: { cpuMillis: 2000, memoryBytes: 2 ** 30, gpus: [], nics: [], disks: [] },
      sessionId: 'tls-agent',
    }),
  });
  const running = session.run(abort.signal);
  const stop = async () => {
    abort.abort();
    await running;
  };
  t.after(stop);
  return { session, failures: () => lines.filter((l) => l.msg === 'coordinator session failed').map((l) => String(l.err)), stop };
}

/** Watches a session for `ms`: it must never reach 'connected'. */
async function staysConnecting(session: CoordinatorSession, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    assert.notEqual(session.state, 'connected', 'the session was admitted');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function client(t: TestContext, address: string, tls: TlsMaterial | undefined, token: string): CoordinatorClient {
  const c = new CoordinatorClient(address, { credentials: channelCredentials(tls), token, deadlineMs: 3_000, connectTimeoutMs: 1_000 });
  t.after(() => c.close());
  return c;
}

// A refused certificate fails the connection itself (never the call, as a bad token would):
// grpc-js reports it as UNAVAILABLE, with details that vary with the TLS version and timing
// (under TLS 1.3 the server's alert comes after the client finished its side of the handshake).
const REFUSED = /No connection established|Failed to connect|handshake|certificate|alert|socket|closed|reset/i;

describe('mutual TLS', () => {
  test('an agent with a certificate from the cluster CA connects and registers', async (t) => {
    const { coordinator, admin, join } = await mutualTlsCoordinator(t);
    const agent = agentSession(t, coordinator.address, loadTls({ ...good('agent'), ca: goodCa() }, 'client'), join);
    await until('the agent to connect', () => agent.session.state === 'connected');
    assert.equal(agent.session.connectedTo, coordinator.address);

    const cli = client(t, coordinator.address, loadTls({ ...good('cli'), ca: goodCa() }, 'client'), admin);
    const nodes = await cli.listNodes();
    assert.deepEqual(nodes.nodes.map((n) => [n.name, n.status]), [['tls-node', 'ready']]);
  });

  test('an agent with a certificate from another CA is refused', async (t) => {
    const { coordinator, join } = await mutualTlsCoordinator(t);
    // It trusts the cluster's CA, so the server's certificate checks out: only its own fails.
    const agent = agentSession(t, coordinator.address, loadTls({ ...rogue('agent'), ca: goodCa() }, 'client'), join);
    await staysConnecting(agent.session, 2_000);
    await until('a failed attempt', () => agent.failures().length > 0);
    assert.equal(agent.session.state, 'connecting');
    for (const failure of agent.failures()) assert.match(failure, REFUSED);
  });

  test('a client without a certificate, or without TLS, is refused', async (t) => {
    const { coordinator, admin } = await mutualTlsCoordinator(t);
    const noCert = client(t, coordinator.address, loadTls({ ca: goodCa() }, 'client'), admin);
    await assert.rejects(noCert.clusterStatus(), (err: unknown) => {
      assert.ok(MlfleetError.is(err), String(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, REFUSED);
      return true;
    });
    const plain = client(t, coordinator.address, undefined, admin);
    await assert.rejects(plain.clusterStatus(), (err: unknown) => MlfleetError.is(err) && err.code === 'UNAVAILABLE');

    const withCert = client(t, coordinator.address, loadTls({ ...good('cli'), ca: goodCa() }, 'client'), admin);
    assert.equal((await withCert.clusterStatus()).leader, coordinator.address);
  });
});


const run = (t: TestContext, script: string, args: string[]) => runScript(t, script, args, { HOME: tempDir(t, 'mlfleet-tls-home-') });

const tlsFlags = (files: TlsFiles) => [
  ...(files.ca ? ['--tls-ca', files.ca] : []),
  ...(files.cert ? ['--tls-cert', files.cert] : []),
  ...(files.key ? ['--tls-key', files.key] : []),
];

describe('mlfleetctl over TLS', () => {
  test('works with the cluster CA and its own certificate, and fails with one line otherwise', async (t) => {
    const { coordinator, admin } = await mutualTlsCoordinator(t);
    const base = ['--coordinator', coordinator.address, '--token', admin];

    const ok = await run(t, CLI, [...base, ...tlsFlags({ ...good('cli'), ca: goodCa() }), 'cluster', 'status', '-o', 'json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { leader: string }).leader, coordinator.address);

    // The coordinator's certificate is not signed by the CA this user trusts.
    const wrongCa = await run(t, CLI, [...base, ...tlsFlags({ ...good('cli'), ca: rogueCa() }), 'cluster', 'status', '-o', 'json']);
    assert.equal(wrongCa.code, 1);
    assert.equal(wrongCa.stdout, '');
    assert.match(wrongCa.stderr, /^mlfleetctl: .*\n$/);
    assert.match(wrongCa.stderr, new RegExp(coordinator.address.replace(/\./g, '\\.')));

    const rogueCert = await run(t, CLI, [...base, ...tlsFlags({ ...rogue('agent'), ca: goodCa() }), 'cluster', 'status', '-o', 'json']);
    assert.equal(rogueCert.code, 1);
    assert.match(rogueCert.stderr, /^mlfleetctl: .*\n$/);

    const missing = await run(t, CLI, [...base, '--tls-cert', good('cli').cert!, 'cluster', 'status']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, `mlfleetctl: --tls-cert needs --tls-key: the private key of ${good('cli').cert!}\n`);
  });
});

describe('models push and pull over TLS', () => {
  test('the bytes go by https PUT and GET with the cluster CA and the client certificate, and arrive whole', async (t) => {
    const { coordinator, admin } = await mutualTlsCoordinator(t);
    const dir = tempDir(t, 'mlfleet-tls-push-');
    // More than the PUT's few MiB buffers, and not a whole number of them.
    const model = path.join(dir, 'model.onnx');
    const bytes = randomBytes(5 * 1024 * 1024 + 12_345);
    writeFileSync(model, bytes);
    const base = ['--coordinator', coordinator.address, '--token', admin, ...tlsFlags({ ...good('cli'), ca: goodCa() })];

    const pushed = await run(t, CLI, [...base, '-o', 'json', 'models', 'push', 'over-tls', model]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal((JSON.parse(pushed.stdout) as { digest: string }).digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
    const received = await coordinator.metrics.uploadReceivedBytes.get();
    assert.equal(received.values[0]?.value, bytes.length, 'the bytes came by the HTTP PUT');

    const pulled = await run(t, CLI, [...base, 'models', 'pull', 'over-tls', path.join(dir, 'back.onnx')]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.ok(readFileSync(path.join(dir, 'back.onnx')).equals(bytes));

    // Without the cluster CA the coordinator is not trusted: one line, nothing pushed.
    const untrusted = await run(t, CLI, [...base.slice(0, 4), ...tlsFlags({ ...good('cli'), ca: rogueCa() }), 'models', 'push', 'untrusted', model]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /^mlfleetctl: .*\n$/);
  });
});

describe('make-certs.sh', () => {
  test('signs certificates for servers and clients with SANs for the name and loopback, keys 0600, and keeps what exists', () => {
    const dir = path.join(certsDir, 'good');
    const agentCert = readFileSync(good('agent').cert!);
    const caBefore = readFileSync(goodCa());
    makeCerts(dir, ['agent', 'coord1.example']);
    assert.deepEqual(readFileSync(good('agent').cert!), agentCert, 'an existing certificate is kept');
    assert.deepEqual(readFileSync(goodCa()), caBefore, 'the existing CA is kept');

    const ca = new X509Certificate(caBefore);
    const cert = new X509Certificate(readFileSync(good('coord1.example').cert!));
    assert.ok(cert.verify(ca.publicKey), 'signed by the CA');
    assert.equal(cert.subjectAltName, 'DNS:coord1.example, DNS:localhost, IP Address:127.0.0.1');
    assert.deepEqual(cert.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth and clientAuth');
    for (const key of [good('coord1.example').key!, path.join(dir, 'ca-key.pem')]) assert.equal(statSync(key).mode & 0o777, 0o600, key);

    const usage = spawnSync('bash', [MAKE_CERTS], { encoding: 'utf8' });
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /^usage: scripts\/make-certs\.sh DIR \[NAME\.\.\.\]/);
  });
});

describe('TLS flags', () => {
  test('loadTls explains a missing file, a lone certificate or key, and a key of another certificate', () => {
    const cli = good('cli');
    const agent = good('agent');
    const message = (files: TlsFiles, role: 'server' | 'client' = 'client') => {
      try {
        loadTls(files, role);
      } catch (err) {
        assert.ok(MlfleetError.is(err) && err.code === 'INVALID_ARGUMENT', String(err));
        return err.message;
      }
      assert.fail(`loadTls(${JSON.stringify(files)}, ${role}) did not throw`);
    };
    assert.equal(loadTls({}, 'server'), undefined, 'no flags: plain text');
    assert.equal(
      message({ cert: '/nonexistent/cert.pem', key: cli.key }),
      '--tls-cert /nonexistent/cert.pem: cannot read it (no such file)',
    );
    assert.equal(message({ cert: cli.cert }), `--tls-cert needs --tls-key: the private key of ${cli.cert}`);
    assert.equal(message({ key: cli.key }), `--tls-key needs --tls-cert: the certificate of ${cli.key}`);
    assert.match(message({ ca: goodCa() }, 'server'), /^--tls-ca needs --tls-cert and --tls-key: a TLS server must present a certificate/);
    assert.equal(message({ cert: cli.cert, key: agent.key }), `--tls-key ${agent.key} is not the private key of --tls-cert ${cli.cert}`);
    assert.match(message({ cert: cli.key, key: cli.key }), /^--tls-cert .* is not a PEM certificate/);
    assert.match(message({ ca: cli.key }), /^--tls-ca .* is not a PEM certificate/);

    const verifyOnly = loadTls({ ca: goodCa() }, 'client');
    assert.ok(verifyOnly?.ca && !verifyOnly.cert && !verifyOnly.key, 'a client may only verify the server');
  });

  test('the daemons compile --tls-* flags, and a bad one stops the coordinator with exit 2 and one line', async (t) => {
    const coordinator = compileCoordinatorOptions(['--tls-cert', good('coordinator').cert!, '--tls-key', good('coordinator').key!, '--tls-ca', goodCa()]);
    assert.ok(coordinator.tls?.cert && coordinator.tls.key && coordinator.tls.ca);
    assert.equal(compileCoordinatorOptions([]).tls, undefined);
    const agent = await compileAgentOptions(['--driver', 'process', '--name', 'a', '--tls-ca', goodCa()]);
    assert.ok(agent.tls?.ca && !agent.tls.cert);

    const dir = tempDir(t);
    const bad = await run(t, COORDINATOR_MAIN, ['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', dir, '--store', `sqlite:${dir}/c.db`, '--tls-cert', good('coordinator').cert!]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(bad.stderr, `mlfleet-coordinator: --tls-cert needs --tls-key: the private key of ${good('coordinator').cert!}\n`);
  });

  test('a plain-text listener off loopback is warned about, on loopback or with TLS it is not', () => {
    const { log, lines } = recordingLogger();
    assert.equal(warnIfPlaintext('0.0.0.0:7700', undefined, log, 'coordinator gRPC API'), true);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 40, 'a warn line');
    assert.equal(lines[0]!.msg, 'listening on 0.0.0.0:7700 without TLS: anyone on the network can reach this API; use --tls-cert/--tls-key/--tls-ca');

    for (const listen of ['127.0.0.1:7700', 'localhost:7700', '[::1]:7700', '127.0.0.53:7700']) {
      assert.equal(warnIfPlaintext(listen, undefined, log, 'api'), false, listen);
    }
    const tls = loadTls({ ...good('coordinator'), ca: goodCa() }, 'server');
    assert.equal(warnIfPlaintext('0.0.0.0:7700', tls, log, 'api'), false);
    assert.equal(warnIfPlaintext('[::]:7700', undefined, log, 'api'), true);
    assert.equal(warnIfPlaintext('10.0.0.10:7700', undefined, log, 'api'), true);
    assert.equal(lines.length, 3);

    assert.deepEqual(
      ['127.0.0.1', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1', '0.0.0.0', '::', '10.1.2.3', 'example.com'].map(isLoopback),
      [true, true, true, true, true, false, false, false, false],
    );
  });
});
