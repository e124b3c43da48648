// Stacks: how an ML technology runs as a container — its image, the model formats it serves,
// where the model is mounted, its port and readiness check. The built-in table; registering
// stacks through the API arrives with the serving issue.

export interface Stack {
  name: string;
  description: string;
  image: string;
  formats: string[];
  modelMount: string;
  port: number;
  readinessPath: string;
  readinessTimeoutMs: number;
  /** The serving command; empty: the image's own. */
  command: string[];
  /** How it trains, when it can (jobs with --stack). */
  trainCommand: string[];
  env: Record<string, string>;
}

const BUILT_IN: Stack[] = [
  {
    name: 'onnx',
    description: 'the reference ONNX runtime (Open Inference Protocol v2 over HTTP)',
    image: 'mlfleet/onnx:0.1.0',
    formats: ['onnx'],
    modelMount: '/model',
    port: 8080,
    readinessPath: '/v2/health/ready',
    readinessTimeoutMs: 10 * 60_000,
    command: [],
    trainCommand: [],
    env: {},
  },
];

export function findStack(name: string): Stack | undefined {
  return BUILT_IN.find((s) => s.name === name);
}

export function stackNames(): string[] {
  return BUILT_IN.map((s) => s.name);
}
