// Talking to the local Docker engine for `npm run images`: looking an image up, and building one
// from a context (a Dockerfile and the files it adds) streamed as a tar, then tagging it latest.
// Both the build script and an image that builds what it is FROM (onnx → runtime) go through here.
import tar from 'tar-stream';
import { addEntry } from './rootfs.mjs';

/** The image under `tag`, or undefined when the engine has none. */
export async function inspectImage(docker, tag) {
  try {
    return await docker.getImage(tag).inspect();
  } catch (err) {
    if (err.statusCode === 404) return undefined;
    throw err;
  }
}

/**
 * Builds `context` as `tag` and tags it `repository:latest` too; resolves with the built image
 * and the builder's output.
 * @param {{ dockerfile: string, files: Array<{ name: string, source: string }> }} context
 */
export async function buildContext(docker, context, tag, repository) {
  const pack = tar.pack();
  const feeding = (async () => {
    await addEntry(pack, { name: 'Dockerfile', content: context.dockerfile });
    for (const file of context.files) await addEntry(pack, { name: file.name, source: file.source, mode: 0o644 });
    pack.finalize();
  })();
  feeding.catch((err) => pack.destroy(err));
  const response = await docker.buildImage(pack, { t: tag, rm: true, forcerm: true });
  const output = await followBuild(docker, response);
  await feeding;
  await docker.getImage(tag).tag({ repo: repository, tag: 'latest' });
  return { info: await docker.getImage(tag).inspect(), output };
}

/** Waits for the build to end; the legacy builder reports a failed step as an `error` event. */
function followBuild(docker, response) {
  return new Promise((resolve, reject) => {
    const output = [];
    docker.modem.followProgress(
      response,
      (err, events) => {
        if (err) return reject(err);
        const failed = events.find((e) => e.error || e.errorDetail);
        if (failed) {
          const message = failed.errorDetail?.message ?? failed.error;
          const hint = /pull access denied|not found|no such host|dial tcp|i\/o timeout|manifest unknown/i.test(message)
            ? ' (the base image must already be in the local engine: there is no registry to pull it from)'
            : '';
          return reject(new Error(`${message}${hint}\n${output.join('').trim().split('\n').slice(-15).join('\n')}`));
        }
        resolve(output);
      },
      (event) => event.stream && output.push(event.stream),
    );
  });
}
