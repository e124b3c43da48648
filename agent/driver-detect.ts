// Whether a Docker engine answers here: for `npm start` (scripts/local-cluster.ts), which falls
// back to the process driver, loudly, on a developer's machine without Docker. The agent itself
// never guesses: its driver is docker unless --driver process says otherwise.
import Docker from 'dockerode';

export async function detectDriver(docker: Docker = new Docker(), timeoutMs = 1500): Promise<'docker' | 'process'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'process'>((resolve) => {
    timer = setTimeout(() => resolve('process'), timeoutMs);
  });
  const ping = docker.ping().then(() => 'docker' as const, () => 'process' as const);
  try {
    return await Promise.race([ping, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
