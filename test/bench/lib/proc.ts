// What the benchmarks read of a process from /proc: its resident memory and its CPU time.
import { readFileSync } from 'node:fs';

/** Resident memory of a process, in bytes; 0 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

export type CpuTimes = { user: number; system: number };

/** User and system CPU seconds a process has used so far; 0 once it is gone. */
export function cpuTimes(pid: number): CpuTimes {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return { user: 0, system: 0 };
  }
}

/** The CPU time used between two readings. */
export const since = (before: CpuTimes, after: CpuTimes): CpuTimes => ({ user: after.user - before.user, system: after.system - before.system });
