// What the host uses right now, sampled for each heartbeat. Cheap by design (os module only):
// it runs every few seconds on every host.
import os from 'node:os';
import type { Usage } from '../shared/proto.js';

export class UsageSampler {
  private last = cpuTimes();

  sample(): Usage {
    const now = cpuTimes();
    const busy = now.busy - this.last.busy;
    const total = now.total - this.last.total;
    this.last = now;
    const cores = os.cpus().length;
    return {
      cpuMillisUsed: total > 0 ? Math.round((busy / total) * cores * 1000) : 0,
      memoryUsedBytes: os.totalmem() - os.freemem(),
      gpus: [],
    };
  }
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}
