// What the autoscaler (coordinator/autoscale/) needs of the workload controller, and gives it
// back: the contract between the two (docs/autoscaling.md).
import type { AutoscalerView } from '../../shared/proto.js';

export type { AutoscalerView };

export { DEFAULT_TARGET_CONCURRENCY } from '../../shared/autoscale-spec.js';

/** One autoscaled deployment as the controller holds it now. */
export interface AutoscaledDeployment {
  tenant: string;
  name: string;
  minReplicas: number;
  maxReplicas: number;
  /** Already defaulted (never 0). */
  targetConcurrency: number;
  /** 0: never to zero. */
  scaleToZeroAfterMs: number;
  /** spec.replicas: the size last chosen. */
  replicas: number;
  readyReplicas: number;
  /** How many more replicas the tenant's quota allows; undefined: no limit. */
  quotaHeadroom: number | undefined;
}

/** Implemented by the WorkloadController. */
export interface AutoscaleTarget {
  autoscaled(): AutoscaledDeployment[];
  /**
   * Sets spec.replicas of an autoscaled deployment (no generation bump, no rollout), records
   * `reason` as an event on it, and kicks a pass. A deployment gone, no longer autoscaled, or
   * already at `replicas` is left alone.
   */
  resizeDeployment(tenant: string, name: string, replicas: number, reason: string): Promise<void>;
}
