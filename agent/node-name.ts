// The node name an agent takes when --name is not given.
import os from 'node:os';

/** The default node name: the host name, lowercased, as a valid node name. */
export function defaultNodeName(): string {
  return os.hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'node';
}
