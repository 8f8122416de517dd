// A run of one task on this node, as the dispatcher asks for it: the contract between the Task
// Dispatcher (dispatcher.ts: what runs here, and when) and the worker (worker.ts: how it runs).

import type { JobSpec } from '../crdt/schema.ts'

export interface ExecResult {
  readonly ok: boolean
  readonly reason: string | null
}

/** How far a running task is, as its application says; travels in heartbeats only (never the document). */
export interface TaskProgress {
  /** 0..1 of the task, monotonic. */
  readonly fraction: number
  /** The frame being rendered now. */
  readonly frame?: number
}

export type Execute = (
  spec: JobSpec,
  task: number,
  attempt: number,
  signal: AbortSignal,
  progress: (p: TaskProgress) => void,
  /**
   * Called once the task's processes have all exited, before its outputs are checked and published:
   * what is left needs no slot, and the slot's next task may start (none: the slot frees at the end).
   */
  released?: () => void,
) => Promise<ExecResult>

/**
 * Gets a task this node claimed ready while its claim settles and, claimed ahead, while its slot is
 * still busy (the work directory, the inputs fetched and laid out), so its run starts with Blender;
 * unstage when it will not run here after all.
 */
export interface Stager {
  stage(spec: JobSpec, task: number, attempt: number): void
  unstage(job: string, task: number, attempt: number): Promise<void>
  /** Resolves once the clean-up of ended runs (their work directories) is done. */
  settled?(): Promise<void>
}
