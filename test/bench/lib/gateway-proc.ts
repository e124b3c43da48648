// The gateway benchmark's gateway, in its own process: an agent's inference gateway with a
// routing table naming one replica (`gateway-proc MODEL REPLICA_ADDRESS`); prints its address.
import { Gateway } from '../../../agent/gateway/gateway.js';
import { silentLogger } from '../../../shared/log.js';

const [model, replica] = process.argv.slice(2);
const gateway = await Gateway.start({ listen: '127.0.0.1:0', node: 'bench', log: silentLogger() });
gateway.setRoutes({
  revision: 1,
  models: [{ tenant: 'bench', model: model!, endpoints: [{ allocation: 'a', node: 'bench', address: replica!, version: 1, deployment: model! }], type: '', inputFormat: '', outputFormat: '', accuracy: 0, latencyP50Ms: 0, deployment: model! }],
});
console.log(`address ${gateway.address}`);
process.on('SIGTERM', () => void gateway.close().then(() => process.exit(0)));
