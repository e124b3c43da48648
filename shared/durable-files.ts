// Small pieces for writing files that survive a crash: publish by rename, then make the
// rename itself durable.
import fs from 'node:fs/promises';

/** Makes a rename in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
