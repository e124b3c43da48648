// Every image the project ships, in build order (an image comes after the ones it is FROM).
// A stack that ships an image adds its definition here; `npm run images` builds them all.
import { onnxImage } from './onnx.mjs';
import { runtimeImage } from './runtime.mjs';

export const IMAGES = [runtimeImage, onnxImage];
