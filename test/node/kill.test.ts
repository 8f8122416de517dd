// Four `openfarm join` processes of different configured speeds run a job of short tasks; one is
// killed with SIGKILL mid-run. The others notice it is dead, requeue what it held, and finish: every
// task is DONE exactly once (one done event per task), and nothing is lost.

import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ApiClient } from '../../src/node/client.ts'
import { FarmKey } from '../../src/node/farmkey.ts'
import { NO_RENDER_APPS, tempDir, waitFor } from '../helpers.ts'

const NODE = join(process.cwd(), 'node_modules/.bin/node')
const CLI = join(process.cwd(), 'bin/openfarm')

interface Job {
  state: string
  tasks: { index: number; state: string; owner: string | null; attempt: number }[]
}

describe('four processes, one killed mid-run', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  const procs: ChildProcess[] = []
  const peers: string[] = []
  const clients: ApiClient[] = []

  async function start(i: number, bootstrap: string | null): Promise<void> {
    const data = join(dir.path, `n${i}`)
    const args = [
      CLI,
      'join',
      '--data',
      data,
      '--key',
      key.hex,
      '--name',
      `n${i}`,
      '--no-mdns',
      ...NO_RENDER_APPS,
    ]
    args.push('--listen', '/ip4/127.0.0.1/tcp/0', '--speed', String(i + 1), '--dead-after', '2')
    if (bootstrap !== null) args.push('--bootstrap', bootstrap)
    const p = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    p.stdout!.on('data', (d) => {
      out += d
    })
    procs.push(p)
    await waitFor(`n${i} up (${out})`, () => out.includes('local API'), { timeoutMs: 30_000 })
    const api = JSON.parse(await readFile(join(data, 'api.json'), 'utf8')) as { peerId: string }
    peers.push(api.peerId)
    clients.push(await ApiClient.connect(data))
  }

  before(async () => {
    dir = await tempDir('kill4')
    await start(0, null)
    const info = await clients[0]!.get<{ addresses: string[] }>('/v1/info')
    for (const i of [1, 2, 3]) await start(i, info.addresses[0]!)
    await waitFor('four live hosts everywhere', async () => {
      const lists = await Promise.all(clients.map((c) => c.get<{ liveness: string }[]>('/v1/hosts')))
      return lists.every((l) => l.filter((h) => h.liveness === 'alive').length === 4)
    })
  })

  after(async () => {
    for (const p of procs) p.kill('SIGKILL')
    await dir.remove()
  })

  it('every task is DONE exactly once after a worker is killed', async () => {
    const sub = await clients[0]!.post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: '1-24',
      settings: { seconds: 0.4 },
    })
    // the victim: the fastest host, once it is running something
    const victim = 3
    await waitFor('the victim runs a task', async () => {
      const j = await clients[0]!.get<Job>(`/v1/jobs/${sub.id}`)
      return j.tasks.some((t) => t.state === 'RUN' && t.owner === peers[victim])
    })
    procs[victim]!.kill('SIGKILL')
    const done = await waitFor(
      'job DONE without the victim',
      async () => {
        const j = await clients[1]!.get<Job>(`/v1/jobs/${sub.id}`)
        return j.state === 'DONE' ? j : undefined
      },
      { timeoutMs: 60_000 },
    )
    const requeued = done.tasks.filter((t) => t.attempt > 0)
    assert.ok(requeued.length >= 1, 'the killed host’s task was requeued')
    assert.ok(requeued.every((t) => t.owner !== peers[victim]))
    const log = await clients[2]!.get<{ tasks: { kind: string; attempt: number }[][] }>(
      `/v1/jobs/${sub.id}/events`,
    )
    for (const [i, events] of log.tasks.entries()) {
      assert.equal(events.filter((e) => e.kind === 'done').length, 1, `task ${i} has one done event`)
    }
    // the fast hosts did more than the slow one
    const count = (p: string) => done.tasks.filter((t) => t.owner === p).length
    assert.ok(
      count(peers[2]!) >= count(peers[0]!),
      `speed 3 ran ${count(peers[2]!)}, speed 1 ran ${count(peers[0]!)}`,
    )
  })
})
