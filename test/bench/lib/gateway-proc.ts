// The gateway benchmark's gateway, in its own process: an agent's inference gateway with a
// routing table naming one replica and a token table holding one consumer token, as the
// leader would send them (`gateway-proc MODEL REPLICA_ADDRESS TOKEN [autoscaled|unmetered]`);
// prints its address. `autoscaled`: the route holds (an autoscaled deployment) and the load
// reports go to a sink that counts them; `unmetered`: the same with no load measured at all (the
// gateway-autoscale bench's baseline).
import { Gateway } from '../../../agent/gateway/gateway.js';
import { hashSecret, parseToken } from '../../../shared/auth.js';
import { silentLogger } from '../../../shared/log.js';
import { modelRoute } from '../../helpers/routes.js';

const [model, replica, token, mode] = process.argv.slice(2);
let reports = 0;
const parsed = parseToken(token ?? '');
if (!parsed) throw new Error('gateway-proc MODEL REPLICA_ADDRESS TOKEN: no token given');
const gateway = await Gateway.start({
  listen: '127.0.0.1:0',
  node: 'bench',
  credential: () => undefined,
  log: silentLogger(),
  measureLoad: mode !== 'unmetered',
  reportLoad: () => void (reports += 1),
});
gateway.setTokens({ reset: true, complete: true, tokens: [{ id: parsed.id, secretSha256: hashSecret(parsed.secret), role: 'consumer', tenant: 'bench', node: '', expiresAtMs: 0 }], removed: [] });
gateway.setRoutes({
  revision: 1,
  models: [modelRoute('bench', model!, [{ id: 'a', node: 'bench', address: replica! }], { holds: mode === 'autoscaled' || mode === 'unmetered' })],
});
console.log(`address ${gateway.address}`);
process.on('SIGTERM', () => void gateway.close().then(() => process.exit(0)));
// The bench asks (a line on stdin) how many load reports went out.
process.stdin.on('data', () => console.log(`reports ${reports}`));
