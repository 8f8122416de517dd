// Real farms on loopback: several nodes, each with its own libp2p, store and API (no network mocks).

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as Y from 'yjs'
import { MAX_CLOCK } from '../../src/crdt/schema.ts'
import { ApiClient } from '../../src/node/client.ts'
import type { Dispatcher } from '../../src/node/dispatcher.ts'
import { FarmKey } from '../../src/node/farmkey.ts'
import { type RunningNode, serve } from '../../src/node/serve.ts'
import { tempDir, waitFor } from '../helpers.ts'
import { FAST_LOOPBACK_NODE } from '../loopback.ts'

interface Job {
  id: string
  state: string
  priority: number
  held: boolean
  tasks: { index: number; state: string; attempt: number; owner: string | null }[]
}

async function startNode(
  dir: string,
  name: string,
  key: FarmKey,
  bootstrap: string[] = [],
  blocked?: Set<string>,
) {
  const node = await serve({
    dataDir: join(dir, name),
    key,
    configFile: null,
    flags: { name, speed: '1', enableApps: ['command'], disableApps: ['blender', 'ffmpeg'] },
    ...FAST_LOOPBACK_NODE,
    bootstrap,
    ...(blocked === undefined ? {} : { blocked }),
  })
  const client = await ApiClient.connect(join(dir, name))
  return { node, client, name }
}

const addrOf = (n: RunningNode) => n.node.addresses()[0]!

describe('a farm of three nodes on loopback', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  let nodes: Awaited<ReturnType<typeof startNode>>[] = []

  before(async () => {
    dir = await tempDir('farm3')
    const a = await startNode(dir.path, 'a', key)
    const b = await startNode(dir.path, 'b', key, [addrOf(a.node)])
    const c = await startNode(dir.path, 'c', key, [addrOf(a.node)])
    nodes = [a, b, c]
    await waitFor('a full mesh of heartbeats', () =>
      nodes.every((n) => n.node.node.hosts().filter((h) => h.liveness === 'alive').length === 3),
    )
  })

  after(async () => {
    await Promise.all(nodes.map((n) => n.node.stop()))
    await dir.remove()
  })

  it('a job submitted on the third node shows on the others and runs to DONE, each task once', async () => {
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    const sub = await c.client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-12', chunk: 2 })
    for (const n of [a, b]) await waitFor(`job on ${n.name}`, () => n.client.get<Job>(`/v1/jobs/${sub.id}`))
    const done = await waitFor('job DONE', async () => {
      const j = await a.client.get<Job>(`/v1/jobs/${sub.id}`)
      return j.state === 'DONE' ? j : undefined
    })
    assert.equal(done.tasks.length, 6)
    assert.ok(
      done.tasks.every((t) => t.attempt === 0),
      'no task needed a second attempt',
    )
    const onB = await waitFor('DONE on b', async () => {
      const j = await b.client.get<Job>(`/v1/jobs/${sub.id}`)
      return j.state === 'DONE' ? j : undefined
    })
    assert.deepEqual(onB.tasks, done.tasks)
    // every task ran exactly once: one start event per task in the shared log
    const doc = a.node.node.farm.read(sub.id)!
    for (const events of doc.tasks) assert.equal(events.filter((e) => e.kind === 'start').length, 1)
    const owners = new Set(done.tasks.map((t) => t.owner))
    assert.ok(owners.size >= 2, `work spread over ${owners.size} hosts`)
  })

  it('hold, priority, resume and cancel said on one peer are seen on the others', async () => {
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    const sub = await a.client.post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: '1-6',
      settings: { seconds: 5 },
    })
    await b.client.post(`/v1/jobs/${sub.id}/hold`)
    await waitFor('HOLD on c', async () => (await c.client.get<Job>(`/v1/jobs/${sub.id}`)).state === 'HOLD')
    await c.client.post(`/v1/jobs/${sub.id}/priority`, { value: 7 })
    await waitFor('priority on a', async () => (await a.client.get<Job>(`/v1/jobs/${sub.id}`)).priority === 7)
    await a.client.post(`/v1/jobs/${sub.id}/resume`)
    await waitFor('running again on b', async () => {
      const j = await b.client.get<Job>(`/v1/jobs/${sub.id}`)
      return j.state === 'RUN' || j.state === 'QUEUE'
    })
    await b.client.post(`/v1/jobs/${sub.id}/cancel`)
    await waitFor('CANCEL on a and c', async () => {
      const states = await Promise.all(
        [a, c].map(async (n) => (await n.client.get<Job>(`/v1/jobs/${sub.id}`)).state),
      )
      return states.every((s) => s === 'CANCEL')
    })
    // the sleeps were killed: nothing runs on any host
    await waitFor('no task running anywhere', () =>
      nodes.every((n) => n.node.node.hosts()[0]!.running.length === 0),
    )
  })

  it('a failing job fails for good after its retries; retry from another peer runs it again', async () => {
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    const sub = await a.client.post<{ id: string }>('/v1/jobs', {
      app: 'command',
      settings: { argv: '["false"]' },
      maxRetries: 2,
    })
    const failed = await waitFor('FAIL on c', async () => {
      const j = await c.client.get<
        Job & { tasks: { failures: number; lastError: string; failedPeers: string[] }[] }
      >(`/v1/jobs/${sub.id}`)
      return j.state === 'FAIL' ? j : undefined
    })
    assert.equal(failed.tasks[0]!.failures, 2)
    // a host that failed it does not get it again while another host can run it
    assert.equal(new Set(failed.tasks[0]!.failedPeers).size, 2)
    assert.match(failed.tasks[0]!.lastError, /exit code 1/)
    const r = await b.client.post<{ message: string }>(`/v1/jobs/${sub.id}/retry`)
    assert.match(r.message, /1 task\(s\) requeued/)
    // it runs (and fails) again: two more attempts, then FAIL once more
    const again = await waitFor('FAIL again on a', async () => {
      const j = await a.client.get<Job>(`/v1/jobs/${sub.id}`)
      return j.state === 'FAIL' && j.tasks[0]!.attempt >= 4 ? j : undefined
    })
    assert.equal(again.tasks[0]!.attempt, 5)
  })

  it('the local API streams a change event when another peer submits', async () => {
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
    const ac = new AbortController()
    let changes = 0
    const watching = a.client.watch(() => {
      changes++
    }, ac.signal)
    await new Promise((r) => setTimeout(r, 100))
    const before = changes
    await b.client.post('/v1/jobs', { app: 'echo', frames: '1' })
    await waitFor('a change event on a', () => changes > before)
    ac.abort()
    await watching
  })

  it('an unknown job id and a bad submit give clear errors, and nothing accepted is lost', async () => {
    const a = nodes[0]!
    const before = await a.client.get<unknown[]>('/v1/jobs')
    await assert.rejects(a.client.get('/v1/jobs/nope'), { remoteName: 'UnknownJobError' })
    await assert.rejects(a.client.get('/v1/jobs/%E0%A4%A'), { status: 400, remoteName: 'BadRequest' })
    // a dependency list of the wrong type is refused, not run as "no dependencies"
    for (const field of ['dependsOn', 'taskDeps', 'inputsFrom'])
      await assert.rejects(a.client.post('/v1/jobs', { app: 'echo', frames: '1', [field]: 'jabc' }), {
        status: 400,
        message: new RegExp(`${field} must be a list of job ids`),
      })
    await assert.rejects(a.client.post('/v1/jobs', { app: 'echo', frames: '9-1' }), { status: 400 })
    await assert.rejects(a.client.post('/v1/jobs', { app: 'nosuchapp' }), { remoteName: 'UnknownAppError' })
    assert.equal((await a.client.get<unknown[]>('/v1/jobs')).length, before.length)
  })

  it('hostile entries written into the document by a peer are ignored by the others', async () => {
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
    const good = await a.client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-2' })
    await waitFor('good job on b', () => b.client.get<Job>(`/v1/jobs/${good.id}`))
    // a buggy peer writes garbage straight into its replica (valid Yjs, invalid schema)
    const doc = a.node.node.farm.doc
    doc.transact(
      () => {
        const jobs = doc.getMap('jobs')
        jobs.set('evil', 'not a job')
        const bad = new Y.Map()
        bad.set('spec', { id: 'evil2', name: 1 })
        jobs.set('evil2', bad)
        const ev = (jobs.get(good.id) as Y.Map<unknown>).get('events') as Y.Array<unknown>
        ev.push([{ k: 'done', t: 999, a: 0, p: 'x', c: 1 }, 'junk'])
      },
      { kind: 'local' },
    )
    await waitFor('b saw the garbage and kept going', async () => {
      const j = await b.client.get<Job & { invalid: number }>(`/v1/jobs/${good.id}`)
      return j.invalid === 2
    })
    const list = await b.client.get<{ id: string }[]>('/v1/jobs')
    assert.ok(!list.some((j) => j.id.startsWith('evil')))
    const info = await b.client.get<{ peerId: string }>('/v1/info')
    assert.equal(info.peerId, b.node.node.peerId)
  })

  it('a hostile entry that freezes one job leaves the farm running every other job', async () => {
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
    const victim = await a.client.post<{ id: string }>('/v1/jobs', {
      app: 'echo',
      frames: '1-2',
      manual: true,
    })
    await waitFor('victim on b', () => b.client.get<Job>(`/v1/jobs/${victim.id}`))
    // a peer sets the job's clock to the limit: no event after it could be read by anyone
    const doc = b.node.node.farm.doc
    doc.transact(
      () => {
        const jobs = doc.getMap('jobs')
        const ev = (jobs.get(victim.id) as Y.Map<unknown>).get('events') as Y.Array<unknown>
        ev.push([{ k: 'release', p: 'evil', c: MAX_CLOCK }])
      },
      { kind: 'local' },
    )
    await waitFor('a sees the job frozen', async () => {
      const j = await a.client.get<Job & { frozen: boolean }>(`/v1/jobs/${victim.id}`)
      return j.frozen
    })
    // a user's action on it is refused with the reason, not answered "done" and lost
    await assert.rejects(a.client.post(`/v1/jobs/${victim.id}/cancel`, {}), {
      status: 409,
      remoteName: 'FrozenJobError',
    })
    // the farm goes on: a new job runs to DONE, and the frozen one is not claimed over and over
    const next = await a.client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-2' })
    await waitFor('the next job DONE', async () => {
      const j = await b.client.get<Job>(`/v1/jobs/${next.id}`)
      return j.state === 'DONE'
    })
    const events = (doc.getMap('jobs').get(victim.id) as Y.Map<unknown>).get('events') as Y.Array<unknown>
    assert.equal(events.length, 1, 'nothing more was written to the frozen job')
  })

  it('a peer that announces free slots and never claims does not stall the farm', async () => {
    const [a] = nodes as [(typeof nodes)[0]]
    // a real node, a hundred times faster than the others by its heartbeat, whose dispatcher is
    // stopped: it wins every auction, announces a free slot, and claims nothing
    const liar = await serve({
      dataDir: join(dir.path, 'liar'),
      key,
      configFile: null,
      flags: { name: 'liar', speed: '100', enableApps: [], disableApps: ['blender', 'ffmpeg'] },
      ...FAST_LOOPBACK_NODE,
      bootstrap: [addrOf(a.node)],
    })
    try {
      await (liar.node as unknown as { dispatcher: Dispatcher }).dispatcher.stop()
      await waitFor('every node hears the liar', () =>
        nodes.every((n) => n.node.node.hosts().some((h) => h.name === 'liar' && h.liveness === 'alive')),
      )
      const sub = await a.client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-4', chunk: 1 })
      const done = await waitFor(
        'the job DONE without the liar',
        async () => {
          const j = await a.client.get<Job>(`/v1/jobs/${sub.id}`)
          return j.state === 'DONE' ? j : undefined
        },
        { timeoutMs: 30_000 },
      )
      assert.ok(done.tasks.every((t) => t.owner !== liar.node.peerId))
      // and `hosts` says so on the nodes that left it out
      const says = (n: (typeof nodes)[0]) => n.node.node.hosts().find((h) => h.name === 'liar')?.leftOut
      assert.ok(nodes.some((n) => says(n) === true))
    } finally {
      await liar.stop()
    }
  })

  // last in this farm: b keeps the deletion, so the others refuse its syncs from here on
  it("a peer that deletes another's job from the document is refused: the job stays and runs", async () => {
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    const victim = await a.client.post<{ id: string }>('/v1/jobs', {
      app: 'echo',
      frames: '1-4',
      chunk: 2,
      manual: true, // waits for its release: it is whole and idle when b strikes
    })
    await waitFor('victim on b and c', async () => {
      for (const n of [b, c]) await n.client.get<Job>(`/v1/jobs/${victim.id}`)
      return true
    })
    const stats = (n: typeof a) => n.node.node.libp2p.services.docSync.stats
    const refusedBefore = [a, c].map((n) => stats(n).gossipRejected + stats(n).syncUpdatesRejected)
    // b deletes the job's entry straight from its replica: valid Yjs, and gossiped as its own change
    const doc = b.node.node.farm.doc
    doc.transact(() => doc.getMap('jobs').delete(victim.id), { kind: 'local' })
    assert.equal(b.node.node.farm.has(victim.id), false)
    await waitFor('a and c refused the deletion', () =>
      [a, c].every((n, i) => stats(n).gossipRejected + stats(n).syncUpdatesRejected > refusedBefore[i]!),
    )
    // anti-entropy (every second here) offers b's whole state again: refused too, and the job stays
    await waitFor('a refused a sync from b', () => stats(a).syncUpdatesRejected > 0 || undefined)
    for (const n of [a, c]) {
      const list = await n.client.get<{ id: string }[]>('/v1/jobs')
      assert.ok(
        list.some((j) => j.id === victim.id),
        `${n.name} still lists the job`,
      )
    }
    // and it runs: released on c, it is DONE on a and c
    await c.client.post(`/v1/jobs/${victim.id}/release`)
    for (const n of [a, c]) {
      await waitFor(`victim DONE on ${n.name}`, async () => {
        const j = await n.client.get<Job>(`/v1/jobs/${victim.id}`)
        return j.state === 'DONE'
      })
    }
  })
})

describe('a stranger and a split farm', () => {
  it('a node with another farm key cannot join, and is told why', async () => {
    const dir = await tempDir('stranger')
    const a = await startNode(dir.path, 'a', FarmKey.generate())
    const x = await startNode(dir.path, 'x', FarmKey.generate(), [addrOf(a.node)])
    try {
      const err = await waitFor('a dial error on x', () => x.node.node.recentDialErrors()[0], {
        timeoutMs: 20_000,
      })
      assert.match(err, /another farm \(different key\)/)
      assert.deepEqual(a.node.node.connectedPeers(), [])
      assert.deepEqual(x.node.node.connectedPeers(), [])
    } finally {
      await Promise.all([a.node.stop(), x.node.stop()])
      await dir.remove()
    }
  })

  it('two halves of a split farm both accept work and converge after healing', async () => {
    const dir = await tempDir('split')
    const key = FarmKey.generate()
    const blocks = [new Set<string>(), new Set<string>(), new Set<string>(), new Set<string>()]
    const a = await startNode(dir.path, 'a', key, [], blocks[0])
    const b = await startNode(dir.path, 'b', key, [addrOf(a.node)], blocks[1])
    const c = await startNode(dir.path, 'c', key, [addrOf(a.node)], blocks[2])
    const d = await startNode(dir.path, 'd', key, [addrOf(a.node), addrOf(c.node)], blocks[3])
    const all = [a, b, c, d]
    let stopped: string[][] = []
    try {
      await waitFor('all connected', () => all.every((n) => n.node.node.connectedPeers().length >= 1))
      // split {a, b} | {c, d}: each side refuses the other, and open connections are closed
      const left = [a, b]
      const right = [c, d]
      for (const [side, other] of [
        [left, right],
        [right, left],
      ] as const) {
        for (const n of side) {
          const i = all.indexOf(n)
          for (const o of other) blocks[i]!.add(o.node.node.peerId)
        }
      }
      for (const n of all) {
        for (const conn of n.node.node.libp2p.getConnections()) {
          // a graceful close waits for every stream; one the other side keeps open is aborted
          if (blocks[all.indexOf(n)]!.has(conn.remotePeer.toString())) {
            await conn.close({ signal: AbortSignal.timeout(3_000) }).catch((err: Error) => conn.abort(err))
          }
        }
      }
      const jl = await a.client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-3', name: 'left' })
      const jr = await d.client.post<{ id: string }>('/v1/jobs', {
        app: 'echo',
        frames: '1-3',
        name: 'right',
      })
      await waitFor('left job on b', () => b.client.get(`/v1/jobs/${jl.id}`))
      await waitFor('right job on c', () => c.client.get(`/v1/jobs/${jr.id}`))
      await assert.rejects(c.client.get(`/v1/jobs/${jl.id}`), { status: 404 })
      await assert.rejects(b.client.get(`/v1/jobs/${jr.id}`), { status: 404 })
      // heal
      for (const s of blocks) s.clear()
      await waitFor('every node has both jobs, in the same state', async () => {
        const views = await Promise.all(
          all.map(async (n) => {
            const l = await n.client.get<Job>(`/v1/jobs/${jl.id}`)
            const r = await n.client.get<Job>(`/v1/jobs/${jr.id}`)
            return JSON.stringify([l.state, l.tasks, r.state, r.tasks])
          }),
        )
        return new Set(views).size === 1 && views[0]!.includes('DONE')
      })
    } finally {
      stopped = await Promise.all(all.map((n) => n.node.stop()))
      await dir.remove()
    }
    // every step of every stop ended in time (a doc sync's write once hung a stop here)
    assert.deepEqual(stopped.flat(), [])
  })
})
