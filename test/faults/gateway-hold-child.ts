// The gateway-hold fault test's gateway, in its own process (so that its memory can be read
// alone): an inference gateway whose routing table holds acme's autoscaled deployment "web"
// (model "m") with no replica, a consumer token given as the first argument, a queue of the size
// given as the second. Prints `address HOST:PORT`; on stdin, `ready ADDRESS` gives the deployment
// a replica, `held` prints `held N reports R` (requests held now, load reports sent so far).
import { createInterface } from 'node:readline';
import { Gateway } from '../../agent/gateway/gateway.js';
import { hashSecret, parseToken } from '../../shared/auth.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import { silentLogger } from '../../shared/log.js';

const [token, queueSize] = process.argv.slice(2);
const parsed = parseToken(token ?? '');
if (!parsed) throw new Error('gateway-hold-child TOKEN QUEUE_SIZE: no token given');
let reports = 0;
const gateway = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger(), queueSize: Number(queueSize), reportLoad: () => void (reports += 1) });
gateway.setTokens({ reset: true, complete: true, tokens: [{ id: parsed.id, secretSha256: hashSecret(parsed.secret), role: 'consumer', tenant: 'acme', node: '', expiresAtMs: 0 }], removed: [] });
const route = (address?: string): ModelRoute =>
  modelRoute('acme', 'm', address ? [{ id: 'a1', address, maxRequestBytes: 16 * 2 ** 20 }] : [], { deployment: 'web', holds: true, maxRequestBytes: 16 * 2 ** 20 });

gateway.setRoutes({ revision: 1, models: [route()] });
console.log(`address ${gateway.address}`);
createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, arg] = line.split(' ');
  if (command === 'ready') gateway.setRoutes({ revision: 2, models: [route(arg)] });
  if (command === 'held') console.log(`held ${gateway.held('acme', 'web')} reports ${reports}`);
});
process.on('SIGTERM', () => void gateway.close().then(() => process.exit(0)));
