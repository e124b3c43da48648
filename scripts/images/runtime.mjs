// mlfleet/runtime: Node.js and nothing else, the base every stack image the project ships is
// layered on (the ONNX serving runtime adds its server and onnxruntime-node to it). Offline it
// is `FROM scratch` plus a root filesystem holding this host's own `node` and the libraries it
// loads; with `--base IMAGE` (hosts with registry access) it is that image instead, set up the
// same way: no entrypoint, `node` as the command, /, and a non-root user.
import path from 'node:path';
import { IMAGE_USER, rootfsEntries, writeTar } from './rootfs.mjs';

export const runtimeImage = {
  name: 'runtime',
  repository: 'mlfleet/runtime',
  description: 'Node.js runtime for mlfleet stacks',

  /**
   * The build context: a Dockerfile and the files it adds.
   * @param {{ workDir: string, base: string | undefined, version: string }} options
   */
  async context({ workDir, base, version }) {
    // Not `mlfleet.*`: containers inherit image labels, and that prefix is the driver's.
    const labels = [
      `LABEL org.opencontainers.image.title="${this.repository}"`,
      `LABEL org.opencontainers.image.description="${this.description}"`,
      `LABEL org.opencontainers.image.version="${version}"`,
      `LABEL org.opencontainers.image.base.name="${base ?? 'scratch'}"`,
      `LABEL org.nodejs.version="${process.version}"`,
    ];
    const user = `USER ${IMAGE_USER.uid}:${IMAGE_USER.gid}`;
    if (base !== undefined) {
      return {
        dockerfile: [`FROM ${base}`, 'ENTRYPOINT []', 'WORKDIR /', user, 'CMD ["node"]', ...labels].join('\n') + '\n',
        files: [],
      };
    }
    const rootfs = path.join(workDir, 'rootfs.tar');
    await writeTar(await rootfsEntries(process.execPath, 'node'), rootfs);
    return {
      // ADD unpacks a local tar keeping its owners and modes (the sticky /tmp, the user's home),
      // which COPY of a directory would not.
      dockerfile:
        [
          'FROM scratch',
          'ADD rootfs.tar /',
          'ENV PATH=/usr/local/bin:/usr/bin:/bin',
          'WORKDIR /',
          user,
          'CMD ["node"]',
          ...labels,
        ].join('\n') + '\n',
      files: [{ name: 'rootfs.tar', source: rootfs }],
    };
  },
};
