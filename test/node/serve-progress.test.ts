// What `status` shows of a running task's progress (the job view's `progress`): only the current
// attempt, as its owner reports it, never a dead host's last heartbeat nor a superseded attempt.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ApiClient } from '../../src/node/client.ts'
import { FarmKey } from '../../src/node/farmkey.ts'
import { type ServeOptions, serve, taskProgress } from '../../src/node/serve.ts'
import type { Execute } from '../../src/node/taskrun.ts'
import type { RunningTask } from '../../src/protocol/heartbeat/codec.ts'
import { tempDir, waitFor } from '../helpers.ts'
import { FAST_LOOPBACK_NODE } from '../loopback.ts'

const run = (job: string, task: number, attempt: number, progress: number, frame: number): RunningTask => ({
  job,
  task,
  attempt,
  startedMsAgo: 100,
  expectedMs: null,
  progress,
  frame,
})

describe('taskProgress', () => {
  const tasks = [
    { index: 0, attempt: 1, owner: 'A' },
    { index: 1, attempt: 0, owner: 'B' },
    { index: 2, attempt: 0, owner: null },
  ]

  it("shows the owner's current attempt, not a dead host's stale one listed after it", () => {
    const hosts = [
      { peer: 'A', liveness: 'alive' as const, running: [run('j1', 0, 1, 0.1, 1)] },
      { peer: 'Z', liveness: 'dead' as const, running: [run('j1', 0, 0, 0.9, 7)] },
    ]
    assert.deepEqual(taskProgress('j1', tasks, hosts), { 0: { progress: 0.1, frame: 1 } })
  })

  it('ignores a superseded attempt and a host that does not own the task, whatever their order', () => {
    const hosts = [
      { peer: 'B', liveness: 'alive' as const, running: [run('j1', 1, 0, 0.5, 3)] },
      // a live host still reporting the attempt it lost, and one reporting the current attempt it never won
      { peer: 'C', liveness: 'alive' as const, running: [run('j1', 0, 0, 0.8, 6), run('j1', 1, 0, 0.2, 9)] },
    ]
    assert.deepEqual(taskProgress('j1', tasks, hosts), { 1: { progress: 0.5, frame: 3 } })
  })

  it('shows nothing of a dead owner, of an unowned task, of another job or of an unknown task', () => {
    const hosts = [
      { peer: 'A', liveness: 'dead' as const, running: [run('j1', 0, 1, 0.3, 2)] },
      {
        peer: 'B',
        liveness: 'suspect' as const,
        running: [run('j2', 1, 0, 0.4, 4), run('j1', 9, 0, 0.4, 4)],
      },
      { peer: 'D', liveness: 'alive' as const, running: [run('j1', 2, 0, 0.4, 4)] },
    ]
    assert.deepEqual(taskProgress('j1', tasks, hosts), {})
  })

  it('shows a suspect owner (it may only be late)', () => {
    const hosts = [{ peer: 'B', liveness: 'suspect' as const, running: [run('j1', 1, 0, 0.6, 5)] }]
    assert.deepEqual(taskProgress('j1', tasks, hosts), { 1: { progress: 0.6, frame: 5 } })
  })
})

type Job = { tasks: { state: string; attempt: number; owner: string }[]; progress: Record<string, unknown> }

describe('status of a task requeued from a dead host (two real nodes on loopback)', () => {
  it("shows the new attempt's progress, not the dead host's last report", async () => {
    const dir = await tempDir('serve-progress')
    const key = FarmKey.generate()
    // attempt 0 reports frame 7 at 90 %, attempt 1 frame 1 at 10 %; both then run until stopped
    const execute: Execute = (_spec, _task, attempt, signal, progress) => {
      setTimeout(
        () => progress(attempt === 0 ? { fraction: 0.9, frame: 7 } : { fraction: 0.1, frame: 1 }),
        50,
      )
      return new Promise((done) => {
        const t = setTimeout(() => done({ ok: true, reason: null }), 60_000)
        signal.addEventListener('abort', () => {
          clearTimeout(t)
          done({ ok: false, reason: 'cancelled' })
        })
      })
    }
    const start = async (name: string, bootstrap: string[] = []) => {
      const opts = {
        dataDir: join(dir.path, name),
        key,
        configFile: null,
        // serve() hands its options on to FarmNode, which runs tasks with `execute` when it is given
        execute,
        flags: { name, speed: '1', enableApps: ['sleep'], disableApps: ['blender', 'ffmpeg', 'command'] },
        ...FAST_LOOPBACK_NODE,
        bootstrap,
      } as ServeOptions
      const node = await serve(opts)
      return { node, client: await ApiClient.connect(join(dir.path, name)) }
    }
    const z = await start('z')
    let a: Awaited<ReturnType<typeof start>> | undefined
    try {
      // z alone: it runs attempt 0
      const job = await z.client.post<{ id: string }>('/v1/jobs', { app: 'sleep', frames: '1-8', chunk: 8 })
      await waitFor('task 0 running on z', async () => {
        const j = await z.client.get<Job>(`/v1/jobs/${job.id}`)
        return j.tasks[0]!.state === 'RUN' && j.tasks[0]!.owner === z.node.node.peerId
      })
      a = await start('a', [z.node.node.addresses()[0]!])
      const { node: an, client } = a
      await waitFor('a hears z report attempt 0', () =>
        an.node.hosts().some((h) => h.name === 'z' && h.running.some((r) => r.progress !== undefined)),
      )
      await z.node.node.libp2p.stop() // z falls silent, as a crash or a pulled cable would make it
      const j = await waitFor(
        'attempt 1 running on a, with its progress reported',
        async () => {
          const j = await client.get<Job>(`/v1/jobs/${job.id}`)
          const own = an.node.hosts()[0]!.running
          return j.tasks[0]!.attempt === 1 &&
            j.tasks[0]!.state === 'RUN' &&
            own.some((r) => r.attempt === 1 && r.progress !== undefined)
            ? j
            : undefined
        },
        { timeoutMs: 20_000 },
      )
      assert.equal(j.tasks[0]!.owner, an.node.peerId)
      assert.ok(an.node.hosts().some((h) => h.name === 'z' && h.liveness === 'dead' && h.running.length > 0))
      assert.deepEqual(j.progress, { 0: { progress: 0.1, frame: 1 } })
    } finally {
      await a?.node.stop()
      await z.node.stop().catch(() => {})
      await dir.remove()
    }
  })
})
