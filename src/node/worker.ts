// The Daemon's side of a task on this host: a work directory per attempt, the application's phases in
// order under the runner, and a one-line reason when it fails. The directory is removed after
// success and kept on failure for inspection.

import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '@libp2p/interface'
import type { JobSpec } from '../crdt/schema.ts'
import { type AppDef, getApp } from '../runner/apps.ts'
import { renderArgv } from '../runner/argv.ts'
import { runPhase } from '../runner/execute.ts'
import type { ExecResult, Execute } from './dispatcher.ts'

export interface WorkerInit {
  readonly workDir: string
  readonly apps: readonly AppDef[]
  readonly log: Logger
  /** Every output line of every task (the Log Router will take them from here). */
  readonly onLine?: (job: string, task: number, stream: 'stdout' | 'stderr', line: string) => void
}

export function worker(init: WorkerInit): Execute {
  return async (spec: JobSpec, task: number, attempt: number, signal: AbortSignal): Promise<ExecResult> => {
    const app = getApp(spec.app, init.apps)
    const dir = join(init.workDir, spec.id, `${task}-${attempt}`)
    await mkdir(join(dir, 'tmp'), { recursive: true })
    for (const phase of app.phases) {
      const argv = renderArgv(app, phase, spec, task)
      const result = await runPhase(argv, {
        cwd: dir,
        env: { TMPDIR: join(dir, 'tmp') },
        signal,
        ...(phase.timeoutMs === undefined ? {} : { timeoutMs: phase.timeoutMs }),
        onLine: (stream, line) => init.onLine?.(spec.id, task, stream, line),
      })
      if (!result.ok) {
        init.log(
          '%s/%d attempt %d: phase %s failed: %s (work dir kept: %s)',
          spec.id,
          task,
          attempt,
          phase.name,
          result.reason,
          dir,
        )
        return { ok: false, reason: `${phase.name}: ${result.reason ?? 'failed'}` }
      }
    }
    await rm(dir, { recursive: true, force: true })
    return { ok: true, reason: null }
  }
}
