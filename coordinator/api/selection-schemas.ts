// Request schema of SelectionService.Select.
import { z } from '../../shared/validation.js';
import { tenantName } from './schemas.js';

/** Metadata values as pushes declare them (coordinator/api/schemas.ts): at most 64 characters. */
const criterion = z.string().max(64, 'must be at most 64 characters');

export const selectSchema = z
  .object({
    tenant: z.union([z.literal(''), tenantName]),
    type: criterion,
    inputFormat: criterion,
    outputFormat: criterion,
    prefer: z.enum(['', 'latency', 'accuracy'], { errorMap: () => ({ message: 'must be latency or accuracy (or empty, to weigh them by latencyWeight)' }) }),
    latencyWeight: z.number().min(0, 'must be between 0 (all accuracy) and 1 (all latency)').max(1, 'must be between 0 (all accuracy) and 1 (all latency)').optional(),
    maxLatencyMs: z.number().nonnegative('must be 0 (no ceiling) or more').max(86_400_000, 'must be at most a day'),
  })
  .refine((r) => r.type !== '' || r.inputFormat !== '' || r.outputFormat !== '', {
    message: 'give at least one of type, inputFormat and outputFormat: what the model must be',
    path: ['type'],
  })
  .refine((r) => r.prefer === '' || r.latencyWeight === undefined, {
    message: 'give prefer or latencyWeight, not both (prefer latency is weight 1, accuracy weight 0)',
    path: ['latencyWeight'],
  });
