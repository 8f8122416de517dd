// Inputs and outputs of the scoring auction. Pure data: the scheduler reads nothing else, owns no
// clock (times are seconds relative to the caller's "now") and no randomness, so every peer that
// holds the same inputs computes the same placements, and test/sim can replay any run.

import type { Policy } from '../crdt/schedspec.ts'

/** How a job weighs time against energy cost (defined with the job's schema). */
export type { Policy }

export interface SchedHost {
  readonly peer: string
  /** Work units per second (a speed-1 host does one unit of work in one second). */
  readonly speed: number
  /** Seconds from now until each of its slots is free (0: free now); one entry per slot. */
  readonly slotFreeIn: readonly number[]
  /** Watts drawn while running a task. */
  readonly wattsLoaded: number
  /** Price of electricity per kWh, null when unknown (then the farm's median counts). */
  readonly price: number | null
  /** Applications it runs, with versions (null: unknown version). */
  readonly apps: ReadonlyMap<string, string | null>
  readonly tags: ReadonlySet<string>
  readonly memoryMb: number
  readonly gpus: number
  /** Per app: how much faster its GPU device runs it than `speed` says (absent: 1). */
  readonly gpuSpeedup?: ReadonlyMap<string, number>
}

export interface Requirements {
  readonly app: string
  /** Accepted versions: an exact version, or a 'major.minor' prefix ('3.4' accepts 3.4.1). */
  readonly appVersion: string | null
  readonly tags: readonly string[]
  readonly memoryMb: number
  readonly gpus: number
}

export interface SchedTask {
  /** `${job}/${index}` */
  readonly key: string
  readonly job: string
  /** Estimated work units (seconds on a speed-1 host). */
  readonly work: number
  /**
   * Standard deviation of the work of its job's tasks, once finished tasks tell it. Used near the end
   * of the queue only: see SchedInput.drainIn.
   */
  readonly workSd?: number
  readonly requires: Requirements
  readonly policy: Policy
  /** A farm-wide license the task holds while it runs. */
  readonly license: string | null
  /** Peers that may not run it: blocklisted for its job. */
  readonly excluded: ReadonlySet<string>
  /** Peers that failed it: used only when no other eligible host is left. */
  readonly avoid?: ReadonlySet<string>
}

export interface SchedInput {
  /** Ready tasks in priority order; the scheduler looks at the head only (see maxTasks). */
  readonly tasks: readonly SchedTask[]
  readonly hosts: readonly SchedHost[]
  /** Seats free now per license name (absent: the license has no seats). */
  readonly licenses: ReadonlyMap<string, number>
  /**
   * How many tasks of the head to place, lookahead included (a plan). Absent: up to free slots now
   * + 2 per host, stopping once every slot free now is taken (only start-now placements).
   */
  readonly maxTasks?: number
  /**
   * Seconds from now until the farm could have done all work it knows of (the running tasks' rest
   * and every ready task, over the hosts' total speed): a lower bound on the makespan. A placement
   * whose pessimistic finish (work + TAIL_SD x workSd) would run past it is charged the overrun, so
   * the last tasks go where a heavy one cannot become the straggler. Absent: plain earliest finish.
   */
  readonly drainIn?: number
}

export interface Placement {
  readonly key: string
  readonly peer: string
  /** Seconds from now: 0 means a slot is free now and the task should be claimed now. */
  readonly start: number
  readonly finish: number
  /** Energy cost of running it there (kWh x price). */
  readonly cost: number
  /** The claim's bid: lower wins; comparable between peers for the same task. */
  readonly bid: number
}
