// Helpers of the JSON shapes in shared/views/ (mlfleetctl -o json and the REST API).

/** Epoch milliseconds → ISO-8601, or null for 0 ("never"). */
export function isoOrNull(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

/** A copy with keys sorted, so JSON and YAML output does not depend on map order. */
export function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}
