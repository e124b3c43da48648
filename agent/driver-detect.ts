// Chooses the default task driver: docker when a Docker engine answers, else process.
import Docker from 'dockerode';

export async function detectDriver(docker: Docker = new Docker(), timeoutMs = 1500): Promise<'docker' | 'process'> {
  const timeout = new Promise<'process'>((resolve) => setTimeout(() => resolve('process'), timeoutMs).unref());
  const ping = docker.ping().then(() => 'docker' as const, () => 'process' as const);
  return Promise.race([ping, timeout]);
}
