// Reading a daemon's Prometheus /metrics in tests.
import { request } from 'undici';

/**
 * A counter's value from the /metrics page at `httpAddress`: summed over its label sets, or over
 * those whose labels contain `label` (say `source="peer"`); 0 when the page has no such series.
 */
export async function metricValue(httpAddress: string, name: string, label = ''): Promise<number> {
  const { body } = await request(`http://${httpAddress}/metrics`);
  const text = await body.text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (label && !line.includes(label))) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    total += Number(line.split(' ').at(-1));
  }
  return total;
}
