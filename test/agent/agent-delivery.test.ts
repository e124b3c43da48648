// The delivery wiring of a real agent process, against a scripted leader: the hello says the
// agent's peer upload cap (half its fastest NIC by default, 0 with sharing off), every heartbeat
// carries its delivery counters, its /metrics exports them, and its gateway checks peers'
// grants with the key the leader's Welcome carried.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { GRANT_HEADER, generateGrantKeys, loadGrantKeys, signGrant } from '../../shared/blob-http.js';
import { mlfleetV1 } from '../../shared/proto.js';
import { until } from '../helpers/eventually.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { startAgent, tempDir } from '../helpers/processes.js';

interface Seen {
  hello?: { nodeName: string; peerUploadMbps: number };
  heartbeats: { delivery?: Record<string, unknown> | null }[];
}

test('the hello says the peer upload cap, heartbeats carry the delivery counters, /metrics exports them, and peers are checked with the welcome\'s grant key', async (t) => {
  const keys = loadGrantKeys(generateGrantKeys().privateKeyDer);
  const foreign = loadGrantKeys(generateGrantKeys().privateKeyDer);
  const peer = mintGatewayToken('node', '', { node: 'peer' });
  const consumer = mintGatewayToken('consumer', 'acme');
  const seen = new Map<string, Seen>();
  const server = new grpc.Server();
  server.addService(mlfleetV1().AgentService.service, {
    Session: (call: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      let node: Seen | undefined;
      call.on('data', (message: { hello?: Seen['hello']; heartbeat?: Seen['heartbeats'][number] }) => {
        if (message.hello) {
          node = { hello: message.hello, heartbeats: [] };
          seen.set(message.hello.nodeName, node);
          call.write({ welcome: { nodeName: message.hello.nodeName, coordinatorId: 'c', leaderAddress: '', heartbeatIntervalMs: 200, nodeTtlMs: 60_000, grantPublicKey: keys.publicKeyDer } });
          call.write({ tokens: tokenTable(peer, consumer) });
        } else if (message.heartbeat) {
          node?.heartbeats.push(message.heartbeat);
        }
      });
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.after(() => server.forceShutdown());
  const dir = tempDir(t, 'mlfleet-agent-delivery-');
  const joinFile = path.join(dir, 'join-token');
  writeFileSync(joinFile, 'mlf_join_notchecked\n', { mode: 0o600 });
  const leader = [`127.0.0.1:${port}`];
  const sharing = await startAgent(t, 'sharing', leader, dir, ['--join-token-file', joinFile]);
  const off = await startAgent(t, 'off', leader, dir, ['--join-token-file', joinFile, '--peer-upload-mbps', '0']);

  await until('both agents heartbeat', () => ['sharing', 'off'].every((n) => (seen.get(n)?.heartbeats.length ?? 0) >= 2), 15_000);
  // startAgent's inventory has a 25000 Mbit/s NIC: half of it by default.
  assert.equal(seen.get('sharing')!.hello!.peerUploadMbps, 12_500);
  assert.equal(seen.get('off')!.hello!.peerUploadMbps, 0);
  for (const beat of seen.get('sharing')!.heartbeats) {
    assert.deepEqual(beat.delivery, { fromPeersBytes: 0, fromCoordinatorBytes: 0, fromS3Bytes: 0, toPeersBytes: 0, corruptPieces: 0 });
  }

  const started = await sharing.waitForMessage('agent started');
  const metrics = await (await fetch(`http://${started.http as string}/metrics`)).text();
  assert.match(metrics, /^mlfleet_agent_blob_received_bytes_total\{source="peer"\} 0$/m);
  assert.match(metrics, /^mlfleet_agent_blob_corrupt_pieces_total\{source="coordinator"\} 0$/m);
  assert.match(metrics, /^mlfleet_agent_blob_peer_sent_bytes_total 0$/m);

  const digest = `sha256:${'e'.repeat(64)}`;
  const ask = async (agent: typeof sharing, token: string, grant: string) => {
    const gateway = (await agent.waitForMessage('agent started')).gateway as string;
    const res = await fetch(`http://${gateway}/v1/blobs/${digest}/pieces`, { headers: { authorization: `Bearer ${token}`, [GRANT_HEADER]: grant } });
    return { status: res.status, error: ((await res.json()) as { error: string }).error };
  };
  const grant = signGrant(keys, { node: 'peer', digest, expiresAtMs: Date.now() + 60_000 });
  const valid = await ask(sharing, peer.token, grant);
  assert.equal(valid.status, 404);
  assert.match(valid.error, /holds no piece/);
  const forged = await ask(sharing, peer.token, signGrant(foreign, { node: 'peer', digest, expiresAtMs: Date.now() + 60_000 }));
  assert.equal(forged.status, 403);
  assert.match(forged.error, /not signed by the leader/);
  assert.equal((await ask(sharing, consumer.token, grant)).status, 403);
  const offAnswer = await ask(off, peer.token, grant);
  assert.equal(offAnswer.status, 404);
  assert.match(offAnswer.error, /--peer-upload-mbps 0/);
});
